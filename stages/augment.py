"""Tang et al. 2019 augmentation of the prepared train split -> data/augmented + operation counts."""

from pipeline.artifacts import AUGMENTED, PREPARED, REPORTS, load_dataset_dir, save_dataset, texts_of, write_json
from pipeline.augment import augment
from pipeline.config import Params
from pipeline.stage import log, stage
from pipeline.tasks import prepared_task


@stage
def main(params: Params, args: list[str]) -> None:
    import datasets

    train = load_dataset_dir(PREPARED)["train"]
    texts, pairs = texts_of(train, prepared_task().is_pair)
    rows, counts = augment(texts, pairs, params.augment, params.seed)
    features = datasets.Features({
        "text": datasets.Value("string"),
        "text_pair": datasets.Value("string"),
        "source_idx": datasets.Value("int64"),
    })
    save_dataset(datasets.Dataset.from_dict(rows, features=features), AUGMENTED, meta=counts.as_dict())
    write_json(REPORTS / "augment.json", counts.as_dict())
    log.info("augmentation: %s", counts.as_dict())


if __name__ == "__main__":
    main()
