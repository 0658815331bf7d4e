"""Print the OpenAPI document of the API: `python -m service.openapi > api_schemas/openapi.json`.

The document depends on the code only, never on the environment, so it is built with default settings.
"""

import json
import sys

from service.app import create_app
from service.settings import Settings


def openapi_document() -> dict[str, object]:
    app = create_app(Settings(_env_file=None, environment="dev"))
    return app.openapi()


def render() -> str:
    return json.dumps(openapi_document(), indent=2, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
