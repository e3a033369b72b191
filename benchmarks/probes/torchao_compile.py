"""Is torchao's int8 faster eager or under ``torch.compile``? (Why ``bench peers`` compiles its torchao row.)

    python benchmarks/probes/torchao_compile.py --model runs/teacher-minilm-sst2-sentences --task sst2 \
        > benchmarks/probes/results/torchao-compile-sst2.json

torchao's int8 dynamic-activation int8-weight tensors dispatch, in eager mode, to a quantize-activation / int8
product / rescale sequence per linear; its documentation pairs ``quantize_`` with ``torch.compile``, which fuses
those steps with inductor-generated C++ kernels. For the teacher: PyTorch fp32 eager, torchao int8 eager and
torchao int8 compiled (one compilation per padded shape: its first call, compilation included, is recorded; run it
with an empty inductor cache, ``/tmp/torchinductor_$USER``, or the cache's reuse is what is timed), timed
interleaved at b1s128 / b32s128 (``--seq``). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from slimbert.bench.peers import torchao_int8
from slimbert.data.tasks import get_task
from slimbert.measure.latency import grid_key, pytorch_runner, random_inputs, set_threads, time_interleaved
from slimbert.models.loading import load_model

BATCHES = (1, 32)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="the fp32 teacher (a directory or a preset name)")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--seq", type=int, default=128, help="padded sequence length")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--budget", type=float, default=8.0, help="seconds of timing per shape")
    args = parser.parse_args(argv)
    set_threads(args.threads)
    bundle = load_model(args.model, get_task(args.task))
    fp32 = bundle.model.eval()
    eager = torchao_int8(fp32)
    compiled = torch.compile(torchao_int8(fp32))
    vocab = int(bundle.tokenizer.vocab_size)
    record: dict = {"model": args.model, "threads": args.threads, "torch": torch.__version__,
                    "compile_s": {}, "latency_ms": {}, "max_abs_logit_difference_compiled_vs_eager": {}}
    for batch, seq in ((b, args.seq) for b in BATCHES):
        key = grid_key(batch, seq)
        inputs = random_inputs(vocab, bundle.arch.inputs, batch, seq)
        with torch.inference_mode():
            start = time.perf_counter()
            compiled_logits = compiled(**inputs).logits  # the first call at this shape compiles
            record["compile_s"][key] = round(time.perf_counter() - start, 1)
            eager_logits = eager(**inputs).logits
        record["max_abs_logit_difference_compiled_vs_eager"][key] = float((compiled_logits - eager_logits).abs().max())
        runners = {"pytorch-fp32": pytorch_runner(fp32, inputs), "torchao-int8-eager": pytorch_runner(eager, inputs),
                   "torchao-int8-compiled": pytorch_runner(compiled, inputs)}
        for name, stats in time_interleaved(runners, budget_s=args.budget).items():
            record["latency_ms"].setdefault(name, {})[key] = round(stats.median_ms, 3)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
