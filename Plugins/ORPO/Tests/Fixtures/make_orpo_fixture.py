"""Writes orpo_trl.json: TRL 1.16 ORPOTrainer's loss and metrics on fixed batches, recomputed in float64.

Run outside the repository's build, in a venv with numpy:  python make_orpo_fixture.py > orpo_trl.json

Each line below mirrors `ORPOTrainer.odds_ratio_loss` and `get_batch_loss_metrics` (trl/experimental/orpo):
the per-pair log-probs are length-averaged (`get_batch_logps(..., average_log_prob=True)`), and
loss = nll_loss - mean(beta * log(sigmoid(log_odds))). nll_loss is the token mean over the chosen
completions (the batch holds completion log-probs only; TRL 1.16 also counts the prompt's tokens).
Gradients with respect to each row's summed log-prob are central finite differences of the same float64
function, independent of any analytic derivation.
"""
import json

import numpy as np


def orpo(chosen_sum, rejected_sum, chosen_tokens, rejected_tokens, beta):
    policy_chosen_logps = chosen_sum / chosen_tokens            # average_log_prob=True
    policy_rejected_logps = rejected_sum / rejected_tokens
    log_odds = (policy_chosen_logps - policy_rejected_logps) - (
        np.log1p(-np.exp(policy_chosen_logps)) - np.log1p(-np.exp(policy_rejected_logps))
    )
    sig_ratio = 1 / (1 + np.exp(-log_odds))                    # F.sigmoid
    ratio = np.log(sig_ratio)
    losses = beta * ratio
    chosen_rewards = beta * policy_chosen_logps
    rejected_rewards = beta * policy_rejected_logps
    nll_loss = -chosen_sum.sum() / chosen_tokens.sum()         # CrossEntropyLoss(mean) over chosen tokens
    loss = nll_loss - losses.mean()
    metrics = {
        "rewards/chosen": chosen_rewards.mean(),
        "rewards/rejected": rejected_rewards.mean(),
        "rewards/accuracies": (chosen_rewards > rejected_rewards).astype(np.float64).mean(),
        "rewards/margins": (chosen_rewards - rejected_rewards).mean(),
        "logps/rejected": policy_rejected_logps.mean(),
        "logps/chosen": policy_chosen_logps.mean(),
        "nll_loss": nll_loss,
        "log_odds_ratio": ratio.mean(),
        "log_odds_chosen": log_odds.mean(),
    }
    return loss, metrics


def gradient(f, x):
    g = np.zeros_like(x)
    for i in range(len(x)):
        h = 1e-6 * max(1.0, abs(x[i]))
        up, down = x.copy(), x.copy()
        up[i] += h
        down[i] -= h
        g[i] = (f(up) - f(down)) / (2 * h)
    return g


def case(name, chosen_sum, rejected_sum, chosen_tokens, rejected_tokens, beta):
    c, r = np.array(chosen_sum, np.float64), np.array(rejected_sum, np.float64)
    tc, tr = np.array(chosen_tokens, np.float64), np.array(rejected_tokens, np.float64)
    loss, metrics = orpo(c, r, tc, tr, beta)
    return {
        "name": name, "beta": beta,
        "chosen_logps": chosen_sum, "rejected_logps": rejected_sum,
        "chosen_tokens": chosen_tokens, "rejected_tokens": rejected_tokens,
        "loss": loss, "metrics": {k: float(v) for k, v in metrics.items()},
        "grad_chosen": gradient(lambda x: orpo(x, r, tc, tr, beta)[0], c).tolist(),
        "grad_rejected": gradient(lambda x: orpo(c, x, tc, tr, beta)[0], r).tolist(),
    }


cases = [
    # Ordinary pairs: chosen ahead, behind, and level; unequal lengths.
    case("ordinary", [-12.5, -30.0, -20.0, -8.0], [-20.0, -24.0, -20.0, -9.5], [5, 20, 10, 4], [4, 30, 10, 5], 0.1),
    # Averages near 0 (probability near 1, where log1p(-exp(a)) is steep) and far below it.
    case("near-zero-and-far", [-0.05, -400.0, -1.0], [-2.0, -3.0, -0.2], [10, 8, 20], [10, 6, 40], 0.25),
    # Large lambda: the odds-ratio term dominates.
    case("large-beta", [-6.0, -15.0], [-9.0, -12.0], [3, 7], [3, 5], 2.0),
]
print(json.dumps({"source": "make_orpo_fixture.py (TRL 1.16 ORPOTrainer.odds_ratio_loss, float64)", "cases": cases}, indent=1))
