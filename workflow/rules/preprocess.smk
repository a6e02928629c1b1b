# Dask-parallel normalisation into chunked HDF5, one file per shard.


rule preprocess:
    input:
        paths.CUTOUTS,
    output:
        stamps_output(),
    params:
        **cfg_params("preprocess"),
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
        "python -m skysift preprocess --config-json {params.cfg:q} --in {input:q} --out {output:q} "
        "--threads {threads} 2> {log:q}"
