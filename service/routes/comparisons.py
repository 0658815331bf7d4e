"""Comparisons: one job on several models, one child job per model, and their side-by-side."""

from typing import Annotated

from fastapi import APIRouter, Path, Response

from api_schemas.comparisons import ComparisonRequest, ComparisonResource
from service.deps import Tenant
from service.handlers.comparisons import ComparisonHandlerDep
from service.routes.common import model_response, problems

router = APIRouter(prefix="/v1/comparisons", tags=["comparisons"])

ComparisonId = Annotated[str, Path(description="Comparison id, `cmp_...`.", max_length=64)]


@router.post(
    "",
    status_code=202,
    response_model=ComparisonResource,
    responses=problems(400, 401, 413, 422, 429, 503),
    summary="Run one job on several models (one child job per model)",
)
async def create_comparison(body: ComparisonRequest, tenant: Tenant, comparisons: ComparisonHandlerDep) -> Response:
    comparison = await comparisons.submit(body, tenant)
    return model_response(comparison, 202, {"Location": f"/v1/comparisons/{comparison.id}"})


@router.get(
    "/{comparison_id}",
    response_model=ComparisonResource,
    responses=problems(401, 404, 422, 503),
    summary="Get a comparison: its children, and once they are done its side-by-side and table",
)
async def get_comparison(comparison_id: ComparisonId, tenant: Tenant, comparisons: ComparisonHandlerDep) -> Response:
    return model_response(await comparisons.get(tenant, comparison_id))


@router.post(
    "/{comparison_id}/cancel",
    response_model=ComparisonResource,
    responses=problems(401, 404, 409, 422, 503),
    summary="Cancel every child of a comparison",
)
async def cancel_comparison(comparison_id: ComparisonId, tenant: Tenant, comparisons: ComparisonHandlerDep) -> Response:
    return model_response(await comparisons.cancel(tenant, comparison_id))


__all__ = ["router"]
