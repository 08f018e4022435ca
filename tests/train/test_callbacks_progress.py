from types import SimpleNamespace

import torch

from semantic_anchors.train.callbacks import step_progress_bar


def test_the_progress_bar_reads_the_loss_on_the_steps_the_module_logs(monkeypatch):
    bar = step_progress_bar(10)
    base = type(bar).__mro__[1]
    monkeypatch.setattr(base, "get_metrics", lambda self, trainer, module: {"v_num": 0})
    logged = []

    def is_log_step(step):
        logged.append(step)
        return step % 3 == 2

    module = SimpleNamespace(progress_loss=torch.tensor(2.5), is_log_step=is_log_step)
    trainer = SimpleNamespace(global_step=3, log_every_n_steps=1)  # step 2 just ended
    assert bar.get_metrics(trainer, module) == {"loss": 2.5}
    module.progress_loss, trainer.global_step = torch.tensor(1.0), 4  # step 3: not logged
    assert bar.get_metrics(trainer, module) == {"loss": 2.5}
    assert logged == [2, 3]
    # a module without is_log_step: Lightning's log_every_n_steps decides
    plain = SimpleNamespace(progress_loss=torch.tensor(7.0))
    trainer = SimpleNamespace(global_step=10, log_every_n_steps=5)
    assert bar.get_metrics(trainer, plain) == {"loss": 7.0}
