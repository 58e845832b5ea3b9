"""What every stage stands on: the stage contract, the runner that makes outputs atomic and
resumable, shard executors, manifests, storage, input screening and progress reporting."""
