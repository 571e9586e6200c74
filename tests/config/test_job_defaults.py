"""The job model's defaults are the documented contract."""

from crawler import Job


def test_job_defaults_match_the_contract() -> None:
    job = Job(start_urls=["https://127.0.0.1:8443/"])
    assert job.http.http2 is True
    assert job.retry.statuses == [429, 500, 502, 503, 504]
    assert job.concurrency.workers == 64 and job.concurrency.per_host == 16
    assert job.scope.robots_txt is True
    assert job.extract.links == "a[href]"
