"""Models the service accepts jobs for, and which workers hold them warm."""

from fastapi import APIRouter

from api_schemas import ModelInfo, ModelList
from jobstate.queues import queue_for
from service.deps import SettingsDep, StoreDep, Tenant
from service.handlers.directions import model_dimensions
from service.routes.common import problems

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList, responses=problems(401, 503), summary="List models")
async def list_models(tenant: Tenant, store: StoreDep, settings: SettingsDep) -> ModelList:
    items = [
        ModelInfo(
            name=name,
            default=name == settings.default_model,
            queue=queue_for(name),
            warm_workers=await store.warm_workers(name),
            dimensions=model_dimensions(settings, name),
            text_encoder=settings.has_text_encoder(name),
        )
        for name in settings.models
    ]
    return ModelList(items=items)
