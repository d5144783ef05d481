#!/usr/bin/env bash
# The proof runs: plain (greedy), self-consistency and cepo on HumanEval (164), CRUXEval-O (400) and 200
# letter questions, on the embedded default model: the baselines on every dataset first, then cepo, with a
# report per dataset after each. Every run resumes, so this can be stopped and started again at will. On a
# 2-core CPU the whole set takes many hours; cepo is most of it.
#
#   scripts/proof.sh [OUT]      # OUT defaults to runs/proof
#
# cepo on letters checks the program each execution writes (rating_type: execution): counting is where a
# 135M model needs to run code. On HumanEval cepo also runs with one candidate (bestofn_n: 1), so its
# accuracy-against-compute curve has two points. CRUXEVAL points at the 400-problem development file
# beside the repository.
set -euo pipefail

out=${1:-runs/proof}
cruxeval=${CRUXEVAL:-../shared/datasets/cruxeval/cruxeval-dev.jsonl}
cepo=.venv/bin/cepo
mkdir -p "$out"
printf 'sample:\n  temperature: 0\n' >"$out/greedy.yaml"
printf 'rating_type: execution\n' >"$out/execution.yaml"
printf 'bestofn_n: 1\n' >"$out/one-candidate.yaml"

run() {  # dataset, then cepo eval's other arguments
    local dataset=$1
    shift
    "$cepo" eval --dataset "$dataset" --out "$out/$dataset" "$@"
}

pick() {  # sets `problems`, the arguments that choose a dataset's problems
    case $1 in
    cruxeval-o) problems=(--path "$cruxeval") ;;
    letters) problems=(--limit 200) ;;
    *) problems=() ;;
    esac
}

# The baselines first, on every dataset: they take minutes, cepo takes hours.
for dataset in humaneval cruxeval-o letters; do
    pick "$dataset"
    run "$dataset" "${problems[@]}" --methods plain --config "$out/greedy.yaml"
    run "$dataset" "${problems[@]}" --methods self-consistency
    "$cepo" eval report "$out/$dataset"
done
for dataset in humaneval letters cruxeval-o; do
    pick "$dataset"
    if [ "$dataset" = letters ]; then
        run "$dataset" "${problems[@]}" --methods cepo --config "$out/execution.yaml" --concurrency 6
    else
        run "$dataset" "${problems[@]}" --methods cepo --concurrency 6
    fi
    if [ "$dataset" = humaneval ]; then
        run "$dataset" --methods cepo --config "$out/one-candidate.yaml" --concurrency 6
    fi
    "$cepo" eval report "$out/$dataset"
done
