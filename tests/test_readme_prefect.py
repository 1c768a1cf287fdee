"""docs/prefect.md's block, run as it stands in a copy of the repository with small params: only the port of
the server and the remote folder are changed, so that it runs beside anything else. The README's Prefect
recipe is lines of that block."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys

import pytest
from conftest import BILSTM_STAGES, BILSTMS_ONLY, PREFECT_GROUP, ROOT, make_repo, tool_env


def prefect_block(document: str = "docs/prefect.md", heading: str = "# Orchestration with Prefect") -> str:
    text = (ROOT / document).read_text(encoding="utf-8")
    section = text[text.index(heading):]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


def test_the_readme_prefect_recipe_is_lines_of_the_tested_block():
    def commands(block: str) -> list[str]:
        return [" ".join(line.split("#")[0].split()) for line in block.replace("\\\n", " ").splitlines()
                if line.split("#")[0].strip()]

    tested = commands(prefect_block())
    recipe = commands(prefect_block("README.md", "### A Prefect pool"))
    assert recipe and all(line in tested for line in recipe), set(recipe) - set(tested)


@pytest.mark.slow
@pytest.mark.xdist_group(PREFECT_GROUP)
def test_the_readme_prefect_block_runs_as_written(tiny_teacher, tmp_path):
    from pipeline.orchestration.prefect_local import free_port

    repo = make_repo(tmp_path, tiny_teacher, BILSTMS_ONLY)
    block = prefect_block()
    assert "4200" in block and "/tmp/distill-remote" in block
    script = block.replace("4200", str(free_port())).replace("/tmp/distill-remote", str(tmp_path / "remote"))
    env = dict(tool_env(), PREFECT_HOME=str(tmp_path / "prefect_home"), PWD=str(repo))
    shell = subprocess.Popen(["bash", "-euo", "pipefail", "-c", script], cwd=repo, env=env, text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        output, _ = shell.communicate(timeout=1500)
        assert shell.returncode == 0, output[-6000:]
        env["PREFECT_API_URL"] = re.search(r"PREFECT_API_URL=(\S+)", script).group(1)
        runs = json.loads(subprocess.run([sys.executable, "-c", READ_RUNS], env=env, capture_output=True, text=True,
                                         check=True).stdout)
    finally:
        os.killpg(shell.pid, signal.SIGTERM)  # the server and the workers the block left running
        shell.wait()
    assert runs["states"] == ["Completed"] * len(runs["states"]) and len(runs["states"]) >= 6 + len(BILSTM_STAGES)
    assert any("| bilstm_kd |" in r and "reports/plots/accuracy_latency.png" in r for r in runs["reports"])
    assert runs["schedules"] == ["0 3 * * *"]
    assert (tmp_path / "remote").is_dir() and (repo / "models/students/bilstm_kd/model.safetensors").is_file()


READ_RUNS = """
import json
from prefect import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterName
with get_client(sync_client=True) as c:
    runs = c.read_flow_runs()
    reports = [a.data for a in c.read_artifacts() if a.key == "distill-report"]
    (pipeline,) = c.read_deployments(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["distill-pipeline"])))
    print(json.dumps({"states": [r.state.name for r in runs], "reports": reports,
                      "schedules": [s.schedule.cron for s in pipeline.schedules]}))
"""
