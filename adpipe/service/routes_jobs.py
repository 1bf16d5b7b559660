"""Fit jobs: start one, poll it, list them."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool

from adpipe.core.messages import ErrorBody, FitJobRequest, JobStatus
from adpipe.service.errors import ApiError
from adpipe.service.security import require

router = APIRouter(tags=["jobs"])


@router.post("/v1/jobs/fit", status_code=202, summary="Start a fit job (adpipe fit in the background)",
             responses={400: {"model": ErrorBody, "description": "a config path outside configs_dir, or a bad "
                              "override"},
                        404: {"model": ErrorBody, "description": "no such config in configs_dir"},
                        409: {"model": ErrorBody, "description": "the server has no configs_dir"}},
             dependencies=[Depends(require("admin"))])
async def start_fit(body: FitJobRequest, request: Request) -> JobStatus:
    jobs = request.app.state.service.jobs
    return JobStatus(**await run_in_threadpool(jobs.submit, body.config, body.overrides))


@router.get("/v1/jobs", summary="Fit jobs, newest first", dependencies=[Depends(require("read"))])
async def list_jobs(request: Request, limit: int = Query(50, ge=1, le=1000)) -> list[JobStatus]:
    rows = await run_in_threadpool(request.app.state.service.state.jobs, limit)
    return [JobStatus(**row) for row in rows]


@router.get("/v1/jobs/{job_id}", summary="One fit job's status",
            responses={404: {"model": ErrorBody, "description": "no such job"}},
            dependencies=[Depends(require("read"))])
async def show_job(job_id: str, request: Request) -> JobStatus:
    row = await run_in_threadpool(request.app.state.service.state.job, job_id)
    if row is None:
        raise ApiError(404, "job_not_found", f"No fit job '{job_id}'.", "GET /v1/jobs lists the jobs")
    return JobStatus(**row)
