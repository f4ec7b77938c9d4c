"""torchrun plumbing: which GPU a rank uses, and what init_process_group is given."""

from __future__ import annotations

import inspect
import socket

import torch
import torch.distributed as dist

from dna_zoo.search.supernet.distributed import process_group_options, rank_device


def test_every_rank_gets_its_own_gpu_under_torchrun():
    asked = torch.device("cuda", 3)
    assert [rank_device(asked, r, 4) for r in range(4)] == [torch.device("cuda", r) for r in range(4)]
    assert rank_device(asked, 0, 1) == asked  # one process: the GPU asked for
    assert rank_device(torch.device("cuda"), 2, 1) == torch.device("cuda", 2)


def test_nccl_is_bound_to_the_rank_gpu_with_device_id():
    opts = process_group_options(torch.device("cuda", 1))
    assert opts == {"backend": "nccl", "device_id": torch.device("cuda", 1)}
    inspect.signature(dist.init_process_group).bind(**opts)  # the real function takes these


def test_gloo_options_initialise_a_real_process_group():
    opts = process_group_options(torch.device("cpu"))
    assert opts == {"backend": "gloo"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group(**opts, init_method=f"tcp://127.0.0.1:{port}", world_size=1, rank=0)
    try:
        t = torch.ones(3)
        dist.all_reduce(t)
        assert dist.get_backend() == "gloo" and t.tolist() == [1.0, 1.0, 1.0]
    finally:
        dist.destroy_process_group()
