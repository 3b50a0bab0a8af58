"""Each process samples its own stream: workers, replacements and resumed runs never replay proposals."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from hpo.config.study import load_config
from hpo.run.bootstrap import start_study
from hpo.run.protocol import WorkerExit, WorkerId
from hpo.run.setup import prepare
from hpo.run.worker import _trial_loop
from hpo.storage.study import derive_seed, seed_sampler
from hpo.train.loop import EpochResult, TrainResult
from hpo.trial import keys as K
from hpo.trial.space import SpaceContext, sample
from tests.support import CI_CONFIG


def _first_configs(study: optuna.Study, n: int) -> list[dict[str, object]]:
    cfg = load_config(CI_CONFIG)
    ctx = SpaceContext(models=tuple(cfg.models), space=cfg.space, on_cuda=False)
    out = []
    for _ in range(n):
        trial = study.ask()
        out.append(sample(trial, ctx).model_dump())
        study.tell(trial, 0.5)
    return out


def _study(storage: optuna.storages.BaseStorage) -> optuna.Study:
    return optuna.create_study(storage=storage, study_name="s", direction="maximize", load_if_exists=True)


def test_derive_seed_keeps_the_study_seed_for_stream_zero_and_separates_the_others() -> None:
    assert derive_seed(42) == derive_seed(42, 0, 0) == 42
    seeds = {derive_seed(42, slot, gen) for slot in range(4) for gen in range(4)}
    assert len(seeds) == 16
    assert derive_seed(42, 1, 0) == derive_seed(42, 1, 0)  # reproducible
    assert derive_seed(42, 1, 0) != derive_seed(43, 1, 0)


def test_two_workers_of_one_study_with_one_seed_propose_different_first_configs() -> None:
    cfg = load_config(CI_CONFIG)
    storage = optuna.storages.InMemoryStorage()
    a, b = _study(storage), _study(storage)
    seed_sampler(a, cfg, 1, 0)
    seed_sampler(b, cfg, 2, 0)
    assert _first_configs(a, 1) != _first_configs(b, 1)


def test_a_replaced_worker_does_not_replay_its_predecessor() -> None:
    cfg = load_config(CI_CONFIG)
    storage = optuna.storages.InMemoryStorage()
    first = _study(storage)
    seed_sampler(first, cfg, 1, 0)
    tried = _first_configs(first, 2)
    replacement = _study(storage)
    seed_sampler(replacement, cfg, 1, 1)
    assert not set(map(str, _first_configs(replacement, 2))) & set(map(str, tried))


def test_a_resumed_serial_run_does_not_replay_the_first_proposals() -> None:
    cfg = load_config(CI_CONFIG)
    storage = optuna.storages.InMemoryStorage()
    run1 = _study(storage)
    assert seed_sampler(run1, cfg) == cfg.seed  # a fresh study: the study seed itself
    tried = _first_configs(run1, 2)
    run2 = _study(storage)
    assert seed_sampler(run2, cfg) != cfg.seed
    assert not set(map(str, _first_configs(run2, 2))) & set(map(str, tried))
    # and the same history gives the same seed again (reproducible)
    assert seed_sampler(_study(storage), cfg) == derive_seed(cfg.seed, 4)


class _NoTraining:
    """The objective's trainer without a model: every trial completes at once."""

    def __init__(self, *args: object) -> None:
        pass

    def __call__(self, ctx: object) -> TrainResult:
        return TrainResult(
            best_metric=0.5, best_epoch=0, history=[EpochResult(0, 0.5, 0.5, 0.5, 0.1, 1, 1e-3)]
        )


def test_each_worker_of_a_launcher_samples_with_its_own_seed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker loop itself (not only derive_seed): workers that start together (each on an empty study,
    as at a launch) and a replacement record distinct sampler seeds, none of them the serial run's."""
    monkeypatch.setattr("hpo.trial.objective.Trainer", _NoTraining)
    seeds = []
    for i, worker in enumerate((WorkerId(slot=0), WorkerId(slot=1), WorkerId(slot=0, generation=1))):
        over = {"output_dir": tmp_path / f"runs{i}", "mlflow": False, "n_trials": 10, "par": 2}
        cfg = load_config(CI_CONFIG, over)
        study, _ = start_study(cfg, prepare(cfg))
        assert _trial_loop(cfg, 1, worker) == WorkerExit.RECYCLE
        seeds += [t.user_attrs[K.SAMPLER_SEED] for t in study.get_trials()]
    assert len(seeds) == 3 and len(set(seeds)) == 3, seeds
    assert derive_seed(cfg.seed, 0) not in seeds  # the serial run's stream on an empty study
