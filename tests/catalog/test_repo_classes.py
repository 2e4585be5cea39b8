from embplat.catalog import repo
from embplat.catalog.db import transaction


def test_classes_are_registered_once_and_keep_their_first_role(sessions):
    with transaction(sessions) as s:
        ids = repo.ensure_classes(session=s, names=["cat", "dog"], roles={"dog": "unseen"})
        again = repo.ensure_classes(session=s, names=["dog", "cat"], roles={"dog": "seen"})
        assert ids == again
        assert repo.get_class(session=s, name="dog").role == "unseen"
        assert repo.get_class(session=s, name="owl") is None
        assert list(repo.class_roles(session=s).items()) == [("cat", "seen"), ("dog", "unseen")]


def test_class_counts_per_split_include_empty_classes(sessions, image_row):
    with transaction(sessions) as s:
        ids = repo.ensure_classes(session=s, names=["dog", "cat", "owl"])
        rows = [
            image_row("a" * 64, ids["cat"]),
            {**image_row("b" * 64, ids["cat"]), "split": "test"},
        ]
        repo.add_images(session=s, records=[*rows, image_row("c" * 64, ids["dog"])])
    with sessions() as s:
        counts = [(c.name, n) for c, n in repo.class_counts(session=s)]
    assert counts == [("cat", {"train": 1, "test": 1}), ("dog", {"train": 1}), ("owl", {})]


def test_a_class_without_images_is_deleted(sessions):
    with transaction(sessions) as s:
        cid = repo.ensure_classes(session=s, names=["cat"])["cat"]
        repo.delete_class(session=s, class_id=cid)
    with sessions() as s:
        assert repo.get_class(session=s, name="cat") is None
