# Training sets (labels, simulations or both), their augmentation, and every named model of every task.


def training_set_files(wildcards):
    """Files a training set reads besides stamps, cutouts, split and labels (training_set)."""
    t = config["training_set"]
    files = [config["survey"]["catalog"]] if t["hosts"]["catalog_cuts"] else []
    files += [t["hosts"]["ids"]] if t["hosts"]["ids"] else []
    if t["psf"]["model"] == "image" and t["psf"]["image"]:
        files += [t["psf"]["image"].format(band=b) for b in BANDS]
    return files


def training_shard_files(pattern):
    """Input function: ``pattern`` (with {shard}) for every shard training reads."""
    return lambda wildcards: expand(pattern, shard=training_shards())


def training_shards_record(wildcards):
    """results/index/training_shards.json when training_set.shards is frozen: rewritten by
    the index only when the recorded shards change, so it re-makes the training sets then."""
    training_shards()  # after the survey_index checkpoint
    frozen = config["training_set"]["shards"] == "frozen"
    return [TRAINING_SHARDS_FILE] if frozen and Path(TRAINING_SHARDS_FILE).exists() else []


def after_index(function):
    """``function`` as an input function that waits for the survey index checkpoint.

    Snakemake keeps the rerun reason of a job planned before a checkpoint ran: augment and
    train, planned while the re-running index left the training set's inputs unknown, would
    re-run though the index keeps the training shards. Waiting for the index, they are
    planned again after it, from the training set as it then stands. In a new working
    directory (no index yet) nothing waits, so a dry run still plans every rule.
    """
    def inputs(wildcards):
        if Path("results/index/shards.json").exists():  # the checkpoint's output
            shards()  # after the survey_index checkpoint
        return function(wildcards)

    return inputs


# frozen: the split of an object is a hash of its id (split.salt, split.fractions, both in
# params), so a split file rewritten for a grown catalog changes none of the recorded
# shards' rows: its mtime alone re-makes nothing.
TRAINING_SPLIT = (
    ancient("results/split.fits")
    if config["training_set"]["shards"] == "frozen"
    else "results/split.fits"
)


rule training_set:
    input:
        stamps=training_shard_files("results/stamps/{shard}.h5"),
        cutouts=training_shard_files("results/cutouts/{shard}.h5"),
        shards=training_shards_record,
        split=TRAINING_SPLIT,
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
        after_index(lambda wildcards: f"results/train/{wildcards.task}.h5"),
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
        unpack(after_index(model_inputs)),
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
