# Multi-band stamps at catalog positions, one HDF5 per shard of tiles (the training shards,
# and every shard with cutouts.all_shards); all rejects merged, from infer's per-shard tables.


rule cutouts:
    input:
        tiles=shard_files,
        shard_index=shard_rows_file,
    output:
        stamps=paths.CUTOUTS,
        rejects=paths.CUTOUT_REJECTS,
    params:
        **cfg_params("survey", "cutouts", "preprocess", "strict"),
        index_dir=lambda wildcards, input: Path(input.shard_index).parent.parent,
    conda:
        ENV
    log:
        "logs/cutouts/{shard}.log",
    benchmark:
        "results/benchmarks/cutouts/{shard}.tsv"
    threads: 1
    resources:
        mem_mb=cutouts_mem_mb,
        runtime=60,
    shell:
        "python -m skysift cutouts --config-json {params.cfg:q} --shard {wildcards.shard} "
        "--index-dir {params.index_dir:q} --out {output.stamps:q} --rejects {output.rejects:q} "
        "2> {log:q}"


rule rejects:
    input:
        index=paths.INDEX_REJECTS,
        tiles=paths.INDEX_TILES,
        shards=per_shard(paths.SCORE_REJECTS),
    output:
        paths.REJECTS,
    params:
        **cfg_params(),
        index_dir=lambda wildcards, input: Path(input.index).parent,
    conda:
        ENV
    log:
        "logs/rejects.log",
    benchmark:
        "results/benchmarks/rejects.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    shell:
        "python -m skysift rejects --config-json {params.cfg:q} --index-dir {params.index_dir:q} "
        "--shards {input.shards:q} --out {output:q} 2> {log:q}"
