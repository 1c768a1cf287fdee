"""Augment the prepared train split (and its unlabelled rows, with augment.unlabelled) with one method:
`python -m stages.augment <method>` (one of augment.methods: tang, tinybert) -> data/augmented/<method> +
its operation counts."""

from pipeline.artifacts import (PREPARED, REPORTS, UNLABELLED, augmented_dir, load_dataset_dir, save_dataset, texts_of,
                                write_json)
from pipeline.augment import augmenters
from pipeline.errors import ConfigError
from pipeline.orchestration.stage import log, stage
from pipeline.params.config import Params
from pipeline.tasks import prepared_task


@stage
def main(params: Params, args: list[str]) -> None:
    import datasets
    from datasets import concatenate_datasets

    listed = params.augment.methods
    if len(args) != 1 or args[0] not in listed:
        raise ConfigError(f"usage: python -m stages.augment <method>; augment.methods: {', '.join(listed) or 'none'}")
    method = args[0]
    prepared = load_dataset_dir(PREPARED)
    sources = [prepared["train"]] + ([prepared[UNLABELLED]] if params.augment.unlabelled and UNLABELLED in prepared
                                     else [])
    # source_idx numbers the train rows, then the unlabelled ones
    texts, pairs = texts_of(concatenate_datasets(sources), prepared_task().is_pair)
    rows, counts = augmenters()[method].run(texts, pairs, getattr(params.augment, method), params)
    features = datasets.Features({
        "text": datasets.Value("string"),
        "text_pair": datasets.Value("string"),
        "source_idx": datasets.Value("int64"),
    })
    save_dataset(datasets.Dataset.from_dict(rows, features=features), augmented_dir(method), meta=counts)
    write_json(REPORTS / "augment" / f"{method}.json", counts)
    log.info("augmentation %s: %s", method, counts)


if __name__ == "__main__":
    main()
