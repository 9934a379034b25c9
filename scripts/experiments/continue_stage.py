"""README experiment: one more fine-tuning stage on a built VLA, localisation kept up, then closed loop.

``--data train`` continues on ``tabletop_train`` with the first three steps of every episode
shown four times as often (``--early-repeat``); ``--data random-start`` on a recording whose arm
starts from a random pose (``arm_init_noise=0.2`` rad, recorded first if missing: about 4
minutes), so that the robot state no longer tells which way the expert has been moving. Prints
the localisation error, the held-out teacher-forced metrics, the success table and the failure
funnel for 50 episodes per family. Example::

    python scripts/experiments/continue_stage.py build/vla_loc random-start 1200 build/vla_loc_start
"""

import argparse

import numpy as np

from vla_lessons import env
from vla_lessons.data.layout import DatasetNotFoundError
from vla_lessons.deploy.evaluate import evaluate_policy, failure_table, success_table
from vla_lessons.model.vla import load_vla, save_vla
from vla_lessons.train.build_vla import UNNORM_KEY, LocaliseConfig, start_localisation, split_episodes
from vla_lessons.train.finetune import (FinetuneConfig, evaluate_actions, finetune_vla, load_action_frames,
                                        step_in_episode, vla_policy)
from vla_lessons.train.localise import localisation_error

RANDOM_START = env.BUILD_DIR / "datasets" / "tabletop_train_start"


def random_start_frames():
    from vla_lessons.data.recipes import DatasetRecipe, build_dataset
    from vla_lessons.sim import CONTROL_HZ, SceneConfig, ScriptedExpert, TabletopEnv

    try:
        return load_action_frames(RANDOM_START, wrist=False)
    except (DatasetNotFoundError, FileNotFoundError, ValueError):
        recipe = DatasetRecipe(RANDOM_START.name, episodes_per_family=300, base_seed=1_000_000)
        build_dataset(recipe, make_env=lambda size: (TabletopEnv(SceneConfig(image_size=size, arm_init_noise=0.2)),
                                                     ScriptedExpert, CONTROL_HZ))
        return load_action_frames(RANDOM_START, wrist=False)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("vla", help="the VLA to continue (read-only)")
    parser.add_argument("data", choices=("train", "random-start"))
    parser.add_argument("steps", type=int)
    parser.add_argument("out", help="where to save the continued VLA")
    parser.add_argument("--early-repeat", type=int, default=4, help="with --data train: how often steps 0-2 are shown")
    args = parser.parse_args()
    model = load_vla(args.vla)
    train, heldout = split_episodes(load_action_frames(env.BUILD_DIR / "datasets" / "tabletop_train", wrist=False))
    if args.data == "random-start":
        train, _ = split_episodes(random_start_frames())
    else:
        early = np.flatnonzero(step_in_episode(train.episodes) < 3)
        train = train.subset(np.concatenate([np.arange(len(train))] + [early] * (args.early_repeat - 1)))
    loc = start_localisation(model, LocaliseConfig(), warm_up=False)  # a fresh head on the already-trained towers
    model = loc["model"]
    env.seed_everything(11)
    config = FinetuneConfig(steps=args.steps, lr=1.5e-4, log_every=25, seed=11, loc_batch=16, label_sigma=3.0)
    finetune_vla(model, train, config, unnorm_key=UNNORM_KEY, where=loc["train"], loc_head=loc["head"])
    print("localisation", localisation_error(model, loc["head"], loc["heldout"]), flush=True)
    print("held out", evaluate_actions(model, heldout, unnorm_key=UNNORM_KEY), flush=True)
    save_vla(model, args.out)
    results = evaluate_policy(vla_policy(load_vla(args.out), UNNORM_KEY), episodes=50, progress=True)
    print(success_table(results))
    print(failure_table(results))


if __name__ == "__main__":
    main()
