def test_the_jobs_page_shows_every_job_to_an_admin(admin, app):
    page = admin.get("/admin/jobs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    for job in app.extensions["jobs"].jobs():
        assert f'id="job-{job["name"]}"' in html
    assert "Scheduler running" in html


def test_a_control_posts_with_the_header_token(admin):
    response = admin.post(
        "/api/jobs/demo_tick/pause",
        headers={"X-CSRFToken": admin.csrf, "Accept": "application/json"},
    )
    assert response.status_code == 200
    assert response.json["status"] == "paused"
