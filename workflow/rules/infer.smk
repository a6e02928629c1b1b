# Score every object of every shard with every named model, straight from the shard's tiles
# (cut and normalised in memory; no stamps file is read); gather into one catalog.


rule infer:
    input:
        tiles=shard_files,
        shard_index=shard_rows_file,
        models=plan.infer_models(config),
        catalog=plan.select_inputs(config),
    output:
        scores=plan.infer_scores(config),
        rejects=paths.SCORE_REJECTS,
        **plan.infer_outputs(config),
    params:
        **cfg_params("infer", "train", "survey", "cutouts", "preprocess", "strict"),
        index_dir=lambda wildcards, input: Path(input.shard_index).parent.parent,
        embeddings=lambda wildcards, output: plan.optional_flags(dict(output.items()), "embeddings"),
        stage=plan.infer_stage_arg(config),
    conda:
        ENV
    log:
        "logs/infer/{shard}.log",
    benchmark:
        "results/benchmarks/infer/{shard}.tsv"
    threads: 2
    resources:
        mem_mb=lambda wildcards: plan.infer_mem_mb(
            config, checkpoints.survey_index.get().output.tiles, shards()[wildcards.shard]
        ),
        runtime=60,
    shell:
        "python -m skysift infer --config-json {params.cfg:q} --shard {wildcards.shard} "
        "--index-dir {params.index_dir:q} --models {input.models:q} --out {output.scores:q} "
        "{params.embeddings} {params.stage} --rejects {output.rejects:q} 2> {log:q}"


rule gather:
    input:
        scores=per_shard(paths.SCORES),
        known_lenses=plan.known_lenses_files(config),
    output:
        catalog=catalog_output(),
        **plan.gather_csv(config),
        candidates=expand(paths.CANDIDATES, task=TASKS),
        candidates_table=paths.CANDIDATES_TABLE,
    params:
        **cfg_params("tasks", "infer", "models", "evaluate", "survey"),
        candidates_dir=lambda wildcards, output: Path(output.candidates[0]).parent,
        csv=lambda wildcards, output: plan.optional_flags(dict(output.items()), "csv"),
        known="--known-lenses" if config["survey"]["known_lenses"] else "",
    conda:
        ENV
    log:
        "logs/gather.log",
    benchmark:
        "results/benchmarks/gather.tsv"
    threads: 1
    resources:
        mem_mb=8000,
        runtime=30,
    shell:
        "python -m skysift gather --config-json {params.cfg:q} --scores {input.scores:q} "
        "--out {output.catalog:q} {params.csv} --candidates-dir {params.candidates_dir:q} "
        "--candidates-table {output.candidates_table:q} {params.known} 2> {log:q}"


# Two stages (infer.first_stage, docs/scale.md): infer wrote the first stage of every shard;
# the survey's top fraction is found once, then rescored per shard, cut again from the tiles.
if plan.two_stage(config):

    rule rescore_plan:
        input:
            scores=per_shard(paths.STAGE1),
        output:
            paths.RESCORE_PLAN,
        params:
            **cfg_params("tasks", "infer"),
        conda:
            ENV
        log:
            "logs/rescore_plan.log",
        benchmark:
            "results/benchmarks/rescore_plan.tsv"
        threads: 1
        resources:
            mem_mb=4000,
            runtime=30,
        shell:
            "python -m skysift rescore --config-json {params.cfg:q} --plan "
            "--scores {input.scores:q} --out {output:q} 2> {log:q}"

    rule rescore:
        input:
            tiles=shard_files,
            shard_index=shard_rows_file,
            stage1=paths.STAGE1,
            rescore_plan=paths.RESCORE_PLAN,
            models=[spec.path for spec in MODEL_SPECS],
            catalog=plan.select_inputs(config),
        output:
            scores=paths.SCORES,
        params:
            **cfg_params("infer", "train", "survey", "cutouts", "preprocess", "split", "tasks",
                         "strict"),
            index_dir=lambda wildcards, input: Path(input.shard_index).parent.parent,
        conda:
            ENV
        log:
            "logs/rescore/{shard}.log",
        benchmark:
            "results/benchmarks/rescore/{shard}.tsv"
        threads: 2
        resources:
            mem_mb=lambda wildcards: plan.infer_mem_mb(
                config, checkpoints.survey_index.get().output.tiles, shards()[wildcards.shard]
            ),
            runtime=60,
        shell:
            "python -m skysift rescore --config-json {params.cfg:q} --shard {wildcards.shard} "
            "--index-dir {params.index_dir:q} --models {input.models:q} "
            "--scores {input.stage1:q} --rescore-plan {input.rescore_plan:q} "
            "--out {output.scores:q} 2> {log:q}"
