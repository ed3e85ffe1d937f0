"""How the smoke report reads a run's console log: a traceback while the trainer runs fails the run; one
after verl's last trainer line (its 'Final validation metrics' print, trainer_base.py ~525) is teardown.
The excerpts are the lines a real vLLM smoke run printed (Ray prefixes and colour codes included)."""

from __future__ import annotations

from recipe.cpu_backend.run_output import parse_log

STEP = "\x1b[36m(_IVGRTaskRunner pid=5990)\x1b[0m step:2 - ivgr/step/rows:4.0 - actor/pg_loss:0.0332"
FINAL = "\x1b[36m(_IVGRTaskRunner pid=5990)\x1b[0m 'Final validation metrics: None'"
ENGINE_DEAD = ("\x1b[36m(vLLMHttpServer pid=6348)\x1b[0m ERROR 12-05 07:14:37 [async_llm.py:724] "
               "Traceback (most recent call last):")
ACTOR_CRASH = "\x1b[36m(WorkerDict pid=6255)\x1b[0m Traceback (most recent call last):"


def test_a_traceback_after_the_trainer_finished_is_teardown(tmp_path):
    log = tmp_path / "run1.log"
    log.write_text("\n".join([STEP, FINAL, ENGINE_DEAD]) + "\n")
    run = parse_log(log)
    assert run.errors == [] and len(run.teardown_errors) == 1
    assert run.steps[2]["actor/pg_loss"] == 0.0332


def test_a_traceback_during_training_fails_the_run(tmp_path):
    log = tmp_path / "run1.log"
    log.write_text("\n".join([STEP, ACTOR_CRASH, FINAL]) + "\n")
    run = parse_log(log)
    assert len(run.errors) == 1 and run.teardown_errors == []
