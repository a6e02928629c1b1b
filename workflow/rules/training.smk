# Training sets (labels, simulations or both), their augmentation, and every named model of every task.


def training_set_files(wildcards):
    """Files a training set reads besides stamps, cutouts, split and labels (training_set)."""
    t = config["training_set"]
    # the catalog: host cuts on its columns, and label ids checked against it
    needs_catalog = t["hosts"]["catalog_cuts"] or config["survey"]["labels"]
    files = [config["survey"]["catalog"]] if needs_catalog else []
    files += [t["hosts"]["ids"]] if t["hosts"]["ids"] else []
    if t["psf"]["model"] == "image" and t["psf"]["image"]:
        files += [t["psf"]["image"].format(band=b) for b in BANDS]
    return files


rule training_set:
    input:
        stamps=per_shard("results/stamps/{shard}.h5"),
        cutouts=per_shard("results/cutouts/{shard}.h5"),
        split="results/split.fits",
        labels=labels_file(),
        extra=training_set_files,
    output:
        trainset="results/train/{task}.h5",
        gallery=report(
            "results/train/{task}.gallery.png",
            caption="../report/training_gallery.rst",
            category="Training",
            subcategory="{task}",
            labels={"figure": "training set examples"},
        ),
    params:
        cfg=cfg("survey", "tasks", "preprocess", "training_set", "split", "strict"),
    conda:
        ENV
    log:
        "logs/training_set/{task}.log",
    benchmark:
        "results/benchmarks/training_set/{task}.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=60,
    shell:
        "{PY}.trainset --config-json {params.cfg:q} --task {wildcards.task} "
        "--stamps {input.stamps:q} --cutouts {input.cutouts:q} --split {input.split:q} "
        "--out {output.trainset:q} --gallery {output.gallery:q} 2> {log:q}"


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
        unpack(model_inputs),
    output:
        model="results/models/{task}/{model}.pt",
        metrics="results/models/{task}/{model}.metrics.json",
        curve=report(
            "results/models/{task}/{model}.curve.png",
            caption="../report/training_curve.rst",
            category="Training",
            subcategory="{task}",
            labels={"figure": "learning curve, model {model}"},
        ),
    params:
        cfg=model_cfg,
        inputs=model_args,
    conda:
        ENV
    log:
        "logs/train/{task}/{model}.log",
    benchmark:
        "results/benchmarks/train/{task}/{model}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=120,
        gpu=models_resources,
    shell:
        "{PY}.train --config-json {params.cfg:q} --task {wildcards.task} "
        "--model {wildcards.model} {params.inputs} --out {output.model:q} "
        "--metrics {output.metrics:q} --curve {output.curve:q} 2> {log:q}"
