#!/usr/bin/env bash
# Usage: bash tools/dist_train.sh CONFIG GPUS [train.py args]
# Multi-node: NNODES, NODE_RANK, MASTER_ADDR and PORT as for torchrun.
# Exits 143 (as a single tools/train.py does) when SIGTERM stopped the ranks after they
# saved a checkpoint: each rank then creates $MUTUALNET_PREEMPTED_FILE and exits 0, since
# torchrun would take 143 for a failure (stopping the other ranks, exiting 1).
CONFIG=$1
GPUS=$2
NNODES=${NNODES:-1}
NODE_RANK=${NODE_RANK:-0}
PORT=${PORT:-29500}
MASTER_ADDR=${MASTER_ADDR:-"127.0.0.1"}
PREEMPTED=$(mktemp -u "${TMPDIR:-/tmp}/mutualnet_preempted.XXXXXX")

# A SIGTERM to this script too (Slurm signals every process of the job) waits for
# torchrun, which passes it on to the ranks, to end; torchrun still gets the default.
trap ':' TERM
MUTUALNET_PREEMPTED_FILE=$PREEMPTED PYTHONPATH="$(dirname "$0")/..":$PYTHONPATH \
python -m torch.distributed.run \
    --nnodes="$NNODES" --node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" \
    --nproc_per_node="$GPUS" --master_port="$PORT" \
    "$(dirname "$0")/train.py" "$CONFIG" --launcher pytorch "${@:3}"
STATUS=$?
if [ -e "$PREEMPTED" ]; then
    rm -f "$PREEMPTED"
    exit 143
fi
exit $STATUS
