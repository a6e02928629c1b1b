# Dask-parallel normalisation into chunked HDF5, one file per shard.

# infer.keep_stamps: false deletes each shard's stamps once infer and the training sets read them.
STAMPS = "results/stamps/{shard}.h5"


rule preprocess:
    input:
        "results/cutouts/{shard}.h5",
    output:
        STAMPS if config["infer"]["keep_stamps"] else temp(STAMPS),
    params:
        cfg=cfg("preprocess"),
    conda:
        ENV
    log:
        "logs/preprocess/{shard}.log",
    benchmark:
        "results/benchmarks/preprocess/{shard}.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    shell:
        "{PY}.preprocess --config-json {params.cfg:q} --in {input:q} --out {output:q} "
        "--threads {threads} 2> {log:q}"
