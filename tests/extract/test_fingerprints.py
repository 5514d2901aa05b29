"""A cache written before keeps reading the same: the default feature sets' fingerprints, as caches written by mvemo
since issue 72 record them (`mvemo cache info` shows their first 12 characters; the LLDs and the handcrafted sets as
issue 86 made them, over the clip's sound: ``extract.sound``). A change that moves a set's values raises its extractor
version and updates this table on purpose; a refactor that moves code changes nothing here."""

from __future__ import annotations

from mvemo.cache.layout import VIDEO_FEATURES
from mvemo.extract.audio import audio_features
from mvemo.extract.features import FeatureConfigs

RECORDED = {
    "waveform": "f484924af86204b0b6339ce93ea0c0af7373ae3ea4d7b1f7cbaf382ce42427e4",
    "audio48k": "d196877fa012c80838142668ec4d7837e6ac0c5d86da60f35fd7f81f97e4d837",
    "mel": "fdd4f90d0dddcdf4e11dbc08443d67235db5d81870672574238b6bf18c43074a",
    "logmel": "d4504b818352db46bb27dfc8cb51afc529584bbf83b01ff56e160c32ee857fa8",
    "lld": "f146d88afbaf2d58e7b60a4a3d5db40229fd96f2d7b3bb23aaf7bdca75213bb1",
    "descriptors": "b518a5b09968b98b49d4b05a0b7a68f87841f14c3c05d4154882a29a0e7655a1",
    "expressive": "18542892c86f35f62a580f5c11c1a462bc2c335a34dae703ad741262de68410c",
    "egemaps": "a77a70aea2a5a69e455289f45cf87a328ceee701c08ef9e6dbe6f4a16eff716a",
    "compare": "d40a824d74a805bdd6f29252498791daf29dbae1a4c659929b8c168b35b519fb",
    "frames224": "f63ad50d001eb5397b6d530fdb4c84aa8c65e1148ce3b9f21151011c93bf5fe3",
    "frames112": "ace4adeede9f90704c53ef6679445a8b5b3b83bb31dd1d5c0083d7e35a402ab2",
}


def test_the_default_sets_keep_the_fingerprints_caches_recorded() -> None:
    specs = FeatureConfigs().specs([*audio_features(), *VIDEO_FEATURES])
    assert {spec.name: spec.fingerprint for spec in specs} == RECORDED
