import pytest

from megatron_inserter.runtime import ParallelConfig, first_host, resolve_dist_env, validate_sizes


def test_slurm_variables_resolve_rank_world_and_master():
    env = resolve_dist_env({
        "SLURM_PROCID": "5", "SLURM_NTASKS": "16", "SLURM_LOCALID": "1",
        "SLURM_JOB_NODELIST": "gpu-[017-020,033],cpu1", "SLURM_JOB_ID": "4242",
    })
    assert (env.rank, env.world_size, env.local_rank) == (5, 16, 1)
    assert env.master_addr == "gpu-017"
    assert env.master_port == 20000 + 4242 % 20000
    assert env.launcher == "slurm"


def test_torchrun_variables_win_over_slurm():
    env = resolve_dist_env({
        "RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "3", "MASTER_ADDR": "node7", "MASTER_PORT": "6000",
        "SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_JOB_NODELIST": "x1",
    })
    assert (env.rank, env.world_size, env.local_rank, env.master_addr, env.master_port) == (3, 8, 3, "node7", 6000)
    assert env.launcher == "torchrun"


def test_explicit_master_addr_overrides_nodelist_under_slurm():
    env = resolve_dist_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "2", "SLURM_JOB_NODELIST": "a[1-2]",
                            "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "1234"})
    assert (env.master_addr, env.master_port) == ("10.0.0.1", 1234)


@pytest.mark.parametrize("nodelist,host", [
    ("node001", "node001"), ("n[3-4]", "n3"), ("rack1-[09,11-12]-gpu", "rack1-09-gpu"),
    ("a[007],b[1-2]", "a007"), ("h1,h2", "h1"),
])
def test_first_host(nodelist, host):
    assert first_host(nodelist) == host


def test_single_process_defaults():
    env = resolve_dist_env({})
    assert (env.rank, env.world_size, env.launcher) == (0, 1, "single")


def test_sizes_that_do_not_divide_name_the_numbers():
    with pytest.raises(ValueError, match=r"world size 6 .* tensor \(4\) x pipeline \(1\) x context \(1\)"):
        validate_sizes(ParallelConfig(tensor_model_parallel_size=4), 6)
    assert ParallelConfig(tensor_model_parallel_size=2, pipeline_model_parallel_size=2).data_parallel_size(8) == 2
