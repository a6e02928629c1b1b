# Multi-band stamps at catalog positions, one HDF5 per shard of tiles; all rejects merged.


def shard_index_file(wildcards):
    """The shard's own rows (results/index/shards/{shard}.fits): rewritten by the index only
    when they change, so adding tiles re-runs only the new shards."""
    shards()  # after the survey_index checkpoint
    return f"results/index/shards/{wildcards.shard}.fits"


rule cutouts:
    input:
        tiles=shard_files,
        shard_index=shard_index_file,
    output:
        stamps="results/cutouts/{shard}.h5",
        rejects="results/cutouts/{shard}.rejects.ecsv",
    params:
        cfg=cfg("survey", "cutouts", "preprocess", "strict"),
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
        "{PY}.cutouts --config-json {params.cfg:q} --shard {wildcards.shard} "
        "--index-dir results/index --out {output.stamps:q} --rejects {output.rejects:q} "
        "2> {log:q}"


rule rejects:
    input:
        index="results/index/rejects.ecsv",
        tiles="results/index/tiles.json",
        cutouts=per_shard("results/cutouts/{shard}.rejects.ecsv"),
    output:
        "results/rejects.ecsv",
    params:
        cfg=cfg(),
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
        "{PY}.rejects --config-json {params.cfg:q} --index-dir results/index "
        "--cutouts {input.cutouts:q} --out {output:q} 2> {log:q}"
