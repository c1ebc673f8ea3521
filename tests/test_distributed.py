"""Two gloo processes average their gradients exactly as one process would."""
import os, socket
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from smat_nb.training import average_gradients, dist_mean, dist_setup, is_main

def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _worker(rank, world, port, out):
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank))
    r, w, _ = dist_setup('gloo')
    assert (r, w) == (rank, world)
    p = torch.nn.Parameter(torch.zeros(3))
    p.grad = torch.full((3,), float(rank + 1))
    average_gradients([p])
    out[rank] = torch.cat([p.grad, torch.tensor([dist_mean(rank * 10.0), float(is_main())])])
    dist.destroy_process_group()

def test_two_process_gradient_average():
    world = 2
    out = torch.zeros(world, 5).share_memory_()
    mp.spawn(_worker, args=(world, _free_port(), out), nprocs=world, join=True)
    for r in range(world):
        assert torch.equal(out[r, :3], torch.full((3,), 1.5))   # mean of 1 and 2
        assert out[r, 3] == 5.0
    assert out[:, 4].tolist() == [1.0, 0.0]                      # only rank 0 writes files
