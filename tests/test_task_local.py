"""A task model whose teacher is the real tiny local model (llama.cpp): its free-text answers reach the task."""

from __future__ import annotations

import openai
import pytest

from fakes import GatewayServer
from task_helpers import task_entry


@pytest.mark.model
@pytest.mark.slow
def test_a_local_teacher_answers_unsure_requests_and_teaches_the_task(tmp_path: object) -> None:
    from sizewise.catalog import load_catalog

    tiny = load_catalog(None).get("smollm2-135m").model_dump()
    task = task_entry(min_examples=40)
    task["settings"]["teacher"] = "smollm2-135m"
    with GatewayServer({"models": [tiny, task], "gateway": {"log_url": "none"}}) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused", max_retries=0, timeout=120)
        questions = ["Is the sky blue? Answer yes or no.", "Is fire cold? Answer yes or no."]
        for question in questions:
            response = client.chat.completions.create(
                model="sizewise",
                messages=[{"role": "user", "content": question}],
                max_tokens=6,
                extra_body={"sizewise": {"task": "overruling"}},
            )
            sizewise = response.model_extra["sizewise"]
            assert sizewise["model"] == "smollm2-135m" and sizewise["task"]["answered_by"] == "teacher"
        desk = gw.app.state.gateway.engine.tasks
        assert desk.wait_idle(60)
        state = desk.tasks["overruling"].online.state
    assert state.examples + state.unparseable == len(questions)  # each answer was taken in, a label or not
