"""The kubernetes target's machinery: the mock-runtime renderer, schema validation, and the one
module that talks to the Pulumi CLI (``pulumi_cli``). The program itself lives in ``stacks/``."""
