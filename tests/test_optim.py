"""common/optim.py: AdamW fused where it applies, parameter groups kept, same update as the for-loop AdamW."""

import torch

from common.optim import adamw, fused_applies


def test_adamw_fused_on_cpu_keeps_groups_and_matches_the_for_loop_version():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(8, 4), torch.nn.LayerNorm(4)
    ref_a, ref_b = torch.nn.Linear(8, 4), torch.nn.LayerNorm(4)
    ref_a.load_state_dict(a.state_dict())
    ref_b.load_state_dict(b.state_dict())
    opt = adamw([{"params": a.parameters(), "weight_decay": 0.01}, {"params": b.parameters(), "weight_decay": 0.0}],
                lr=1e-2, betas=(0.9, 0.95))
    ref = torch.optim.AdamW([{"params": ref_a.parameters(), "weight_decay": 0.01},
                             {"params": ref_b.parameters(), "weight_decay": 0.0}], lr=1e-2, betas=(0.9, 0.95),
                            foreach=False)
    assert opt.defaults["fused"] is True
    assert [g["weight_decay"] for g in opt.param_groups] == [0.01, 0.0]
    assert [len(g["params"]) for g in opt.param_groups] == [2, 2]
    x = torch.randn(16, 8)
    for _ in range(3):
        for o, (la, lb) in ((opt, (a, b)), (ref, (ref_a, ref_b))):
            o.zero_grad()
            lb(la(x)).square().sum().backward()
            o.step()
    for p, q in zip([*a.parameters(), *b.parameters()], [*ref_a.parameters(), *ref_b.parameters()]):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)  # lr 1e-2 steps; float rounding differs


def test_not_fused_where_no_fused_kernel():
    assert fused_applies([torch.zeros(2)])
    assert not fused_applies([torch.zeros(2), torch.zeros(2, device="meta")])
    assert not fused_applies([torch.zeros(2, dtype=torch.int64)])
    opt = adamw([torch.nn.Parameter(torch.zeros(3, device="meta"))], lr=1e-3)
    assert not opt.defaults["fused"]
