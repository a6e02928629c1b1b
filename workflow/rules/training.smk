# Labelled training sets, their augmentation, and one model per task.


rule training_set:
    input:
        stamps=expand("results/stamps/{tile}.h5", tile=TILES),
        split="results/split.fits",
        labels=labels_file(),
    output:
        "results/train/{task}.h5",
    params:
        cfg=cfg("survey", "tasks"),
    conda:
        ENV
    log:
        "logs/training_set/{task}.log",
    benchmark:
        "results/benchmarks/training_set/{task}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    shell:
        "{PY}.trainset --config-json {params.cfg:q} --task {wildcards.task} "
        "--stamps {input.stamps:q} --split {input.split:q} --out {output:q} 2> {log:q}"


rule augment:
    input:
        "results/train/{task}.h5",
    output:
        "results/train/{task}.augmented.h5",
    params:
        cfg=cfg("augment"),
    conda:
        ENV
    log:
        "logs/augment/{task}.log",
    benchmark:
        "results/benchmarks/augment/{task}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    shell:
        "{PY}.augment --config-json {params.cfg:q} --in {input:q} --out {output:q} 2> {log:q}"


rule train:
    input:
        trainset="results/train/{task}.h5",
        augmented="results/train/{task}.augmented.h5",
    output:
        model="results/models/{task}.pt",
        metrics="results/models/{task}.metrics.json",
        curve="results/models/{task}.curve.png",
    params:
        cfg=cfg("tasks", "augment", "train"),
    conda:
        ENV
    log:
        "logs/train/{task}.log",
    benchmark:
        "results/benchmarks/train/{task}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=1 if config["train"]["device"] == "cuda" else 0,
    shell:
        "{PY}.train --config-json {params.cfg:q} --task {wildcards.task} "
        "--trainset {input.trainset:q} --augmented {input.augmented:q} --out {output.model:q} "
        "--metrics {output.metrics:q} --curve {output.curve:q} 2> {log:q}"
