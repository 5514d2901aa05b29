"""A cache written before keeps reading the same: the default feature sets' fingerprints, as caches written by mvemo
since issue 72 record them (`mvemo cache info` shows their first 12 characters). A change that moves a set's values
raises its extractor version and updates this table on purpose; a refactor that moves code changes nothing here."""

from __future__ import annotations

from mvemo.cache.layout import VIDEO_FEATURES
from mvemo.extract.audio import audio_features
from mvemo.extract.features import FeatureConfigs

RECORDED = {
    "waveform": "f484924af86204b0b6339ce93ea0c0af7373ae3ea4d7b1f7cbaf382ce42427e4",
    "audio48k": "d196877fa012c80838142668ec4d7837e6ac0c5d86da60f35fd7f81f97e4d837",
    "mel": "fdd4f90d0dddcdf4e11dbc08443d67235db5d81870672574238b6bf18c43074a",
    "logmel": "d4504b818352db46bb27dfc8cb51afc529584bbf83b01ff56e160c32ee857fa8",
    "lld": "fc58bb57dd9253bf4418bc7c4a920483c076256cb27a714da81abbadefbb7067",
    "descriptors": "39a643a091f56e6f40be89dd2e4522a3605a8926d872804af4f39cadfaf5dc78",
    "expressive": "59181cfc49d36c94cdcd9cf54f5eaf4bd9e53b0b8f6551358ef5b38db77ce721",
    "egemaps": "ca80cd2130e2819a4c5169f500eca962e1961783193d2de6bd445daff1e8ecad",
    "compare": "8b74121ec4f738a0759fcc589d85a7312ce6a8e7673d25b4119a913694529ad0",
    "frames224": "f63ad50d001eb5397b6d530fdb4c84aa8c65e1148ce3b9f21151011c93bf5fe3",
    "frames112": "ace4adeede9f90704c53ef6679445a8b5b3b83bb31dd1d5c0083d7e35a402ab2",
}


def test_the_default_sets_keep_the_fingerprints_caches_recorded() -> None:
    specs = FeatureConfigs().specs([*audio_features(), *VIDEO_FEATURES])
    assert {spec.name: spec.fingerprint for spec in specs} == RECORDED
