"""The local target's machinery: real Triton on CPU, supervised processes, a model-repository cache.

- ``tritonserver``: the one module that knows the tritonserver binary (locate, backend dir, argv, env).
- ``supervisor``: generic background components (argv, env, health URL, log) and their state files.
- ``repository``: renders ``engines/local/*`` into ``$LLMCTL_CACHE/local/models/<model>-<key>``.
- (the Triton client every part of llmctl shares is ``llmctl.triton_client``)
- ``prompt``: chat messages -> the formatted prompt (``text_input`` is always a complete prompt,
  as with TensorRT-LLM; the caller applies the chat template).
- ``smoke``: what ``up`` checks before it reports success.
- ``spec``: ``LocalStackSpec`` and ``local_spec_from_blueprint``.

``llmctl.targets.local.LocalTarget`` puts them together behind plan/apply/status/destroy.
"""
