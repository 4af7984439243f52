"""The gateway: authenticated, rate-limited, ACL-filtered, cited and audited answers over HTTP.

``create_app(config)`` (``llmctl.gateway.app``) builds the FastAPI app; ``python -m llmctl.gateway``
runs it; ``gateway_factory`` / ``gateway_component`` (``llmctl.gateway.component``) plug it into
``llmctl up``. Heavy imports stay in those modules so importing this package is cheap.
"""

from __future__ import annotations
