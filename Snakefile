# skysift: sift imaging surveys for strong lenses and galaxy mergers.
#   snakemake --cores 2                     # the built-in mock survey, end to end
#   snakemake --cores 8 --configfile my.yaml
#   snakemake --workflow-profile workflow/profiles/slurm
# DAG: mock (if any) -> check -> survey_index (checkpoint: tiles -> shards) -> per shard:
# infer straight from the tiles; cutouts and preprocess for the training shards only;
# training_set/augment per task, train per task and model; gather, evaluate; review_stamps
# (the pages' stamps, cut from the tiles after ranking) and review.
from snakemake.utils import min_version

min_version("8.0")


configfile: "config/config.yaml"
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/mock.smk"
include: "workflow/rules/survey.smk"
include: "workflow/rules/cutouts.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/training.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/recover.smk"
include: "workflow/rules/review.smk"


rule all:
    input:
        plan.final_targets(config),
        every_shard_targets,
    default_target: True
