# Training sets (labels, simulations or both), their augmentation, and every named model of every task.


rule training_set:
    input:
        stamps=training_shard_files(paths.STAMPS),
        cutouts=training_shard_files(paths.CUTOUTS),
        shards=training_shards_record,
        split=training_split(),
        labels=plan.labels_files(config),
        extra=plan.training_set_files(config),
        grades=lambda wildcards: plan.grades_files(config, wildcards.task),
    output:
        trainset=paths.TRAINSET,
        gallery=report(
            paths.TRAIN_GALLERY,
            caption="../report/training_gallery.rst",
            category="Training",
            subcategory="{task}",
            labels={"figure": "training set examples"},
        ),
    params:
        **trainset_cfg(),
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
        "python -m skysift trainset --config-json {params.cfg:q} --task {wildcards.task} "
        "--stamps {input.stamps:q} --cutouts {input.cutouts:q} --split {input.split:q} "
        "--out {output.trainset:q} --gallery {output.gallery:q} 2> {log:q}"


rule augment:
    input:
        after_index(lambda wildcards: paths.TRAINSET.format(task=wildcards.task)),
    output:
        paths.AUGMENTED,
    params:
        **cfg_params("augment"),
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
        "python -m skysift augment --config-json {params.cfg:q} --in {input:q} --out {output:q} 2> {log:q}"


# --resume: a retried or re-run job continues from {output.model}.last (not an output, so
# Snakemake keeps it when a job fails); one of another config or training set is ignored.
rule train:
    input:
        unpack(after_index(model_inputs)),
    output:
        model=paths.MODEL,
        metrics=paths.MODEL_METRICS,
        curve=report(
            paths.MODEL_CURVE,
            caption="../report/training_curve.rst",
            category="Training",
            subcategory="{task}",
            labels={"figure": "learning curve, model {model}"},
        ),
    params:
        **model_cfg(),
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
        gpu=model_gpus,
    shell:
        "python -m skysift train --config-json {params.cfg:q} --task {wildcards.task} "
        "--model {wildcards.model} {params.inputs} --out {output.model:q} "
        "--metrics {output.metrics:q} --curve {output.curve:q} --resume 2> {log:q}"
