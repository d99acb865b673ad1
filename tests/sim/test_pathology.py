"""Pathologies: exact masks inside their host tissue, signal changes in the right direction."""

import jax
import numpy as np
import pytest

from mskjax import sim
from tests.sim.helpers import SHAPE

L = sim.KNEE_LABELS
FORCED = {"cartilage_lesion": "medial_femoral", "meniscal_tear": "medial",
          "bone_marrow_oedema": "medial_tibial", "effusion": True}


@pytest.fixture(scope="module")
def pair():
    """The same subject, healthy and with all four pathologies."""
    key = jax.random.key(21)
    healthy = sim.knee_phantom(key, shape=SHAPE)
    sick = sim.knee_phantom(key, shape=SHAPE, pathology=FORCED)
    return healthy, sick


def test_forced_pathologies_are_present_at_their_sites(pair):
    _, sick = pair
    for name, value in FORCED.items():
        assert bool(sick.pathology.present[name]), name
        mask = np.asarray(sick.pathology.masks[name])
        assert mask.shape == SHAPE and mask.dtype == bool and mask.any(), name
        site = int(sick.pathology.site[name])
        expected = 0 if value is True else sim.PATHOLOGY_SITES[name].index(value)
        assert site == expected, name
    kind = int(sick.pathology.kind["meniscal_tear"])
    assert sim.MENISCAL_TEAR_KINDS[kind] in ("horizontal", "radial")


def test_masks_lie_inside_their_host_tissue(pair):
    healthy, sick = pair
    before, after = np.asarray(healthy.labels), np.asarray(sick.labels)
    masks = {name: np.asarray(m) for name, m in sick.pathology.masks.items()}
    # Lesion: inside the healthy femoral cartilage; the defect is fluid, the rim cartilage.
    lesion = masks["cartilage_lesion"]
    assert np.all(before[lesion] == L["femoral_cartilage"])
    assert set(np.unique(after[lesion])) <= {L["femoral_cartilage"], L["joint_fluid"]}
    assert np.any(after[lesion] == L["joint_fluid"])
    # Tear: a fluid cleft inside the healthy medial meniscus.
    tear = masks["meniscal_tear"]
    assert np.all(before[tear] == L["medial_meniscus"]) and np.all(after[tear] == L["joint_fluid"])
    # Oedema: inside the tibial marrow, which keeps its label.
    oedema = masks["bone_marrow_oedema"]
    assert np.all(before[oedema] == L["tibia"]) and np.all(after[oedema] == L["tibia"])
    # Effusion: fluid that a healthy joint does not have.
    effusion = masks["effusion"]
    assert np.all(after[effusion] == L["joint_fluid"])
    assert not np.any(before[effusion] == L["joint_fluid"])
    # Nothing else changes.
    anywhere = lesion | tear | oedema | effusion
    np.testing.assert_array_equal(after[~anywhere], before[~anywhere])
    # The anatomy is that of the healthy subject.
    for a, b in zip(jax.tree.leaves(healthy.anatomy), jax.tree.leaves(sick.anatomy)):
        np.testing.assert_array_equal(a, b)


def test_signal_changes_go_the_right_way(pair):
    healthy, sick = pair
    masks = {name: np.asarray(m) for name, m in sick.pathology.masks.items()}
    # Fluid-sensitive, fat-suppressed contrasts: PD and the late (T2-weighted) spin echo.
    for contrast in ["pd_fs", "mese"]:
        sequence = {"fat_suppressed": True}
        before = np.asarray(sim.render(healthy, contrast=contrast, **sequence))
        after = np.asarray(sim.render(sick, contrast=contrast, **sequence))
        if contrast == "mese":
            before, after = before[-1], after[-1]
        for name in masks:
            m = masks[name]
            assert after[m].mean() > 1.5 * before[m].mean(), (contrast, name)
    # Oedema: more water, less fat, longer T2, in the fat-sensitive maps as well.
    h, s = sim.tissue_maps(healthy), sim.tissue_maps(sick)
    oedema = masks["bone_marrow_oedema"]
    assert np.all(np.asarray(s.fat_fraction)[oedema] < np.asarray(h.fat_fraction)[oedema])
    assert np.all(np.asarray(s.t2)[oedema] > np.asarray(h.t2)[oedema])
    # On T1-weighted SPGR the oedematous marrow darkens (less fat).
    t1_h = np.asarray(sim.render(healthy, contrast="t1_spgr"))
    t1_s = np.asarray(sim.render(sick, contrast="t1_spgr"))
    assert t1_s[oedema].mean() < 0.8 * t1_h[oedema].mean()
    # The degenerated rim of the lesion keeps its label but has a longer T2 and T1rho.
    rim = masks["cartilage_lesion"] & (np.asarray(sick.labels) == L["femoral_cartilage"])
    assert rim.any()
    assert np.all(np.asarray(s.t2)[rim] > np.asarray(h.t2)[rim])
    assert np.all(np.asarray(s.t1rho)[rim] > np.asarray(h.t1rho)[rim])
    # Effusion: more joint fluid.
    fluid = [np.sum(np.asarray(p.labels) == L["joint_fluid"]) for p in pair]
    assert fluid[1] > 1.5 * fluid[0]


@pytest.mark.parametrize("site", sim.PATHOLOGY_SITES["cartilage_lesion"])
def test_lesion_sites_are_in_their_plate(site):
    plate = {"medial_femoral": "femoral_cartilage", "lateral_femoral": "femoral_cartilage",
             "medial_tibial": "tibial_cartilage", "lateral_tibial": "tibial_cartilage",
             "patellar": "patellar_cartilage"}[site]
    key = jax.random.key(3)
    healthy = np.asarray(sim.knee_phantom(key, shape=SHAPE).labels)
    sick = sim.knee_phantom(key, shape=SHAPE, pathology={"cartilage_lesion": site})
    mask = np.asarray(sick.pathology.masks["cartilage_lesion"])
    assert mask.any() and np.all(healthy[mask] == L[plate])
    # Medial sites are towards +x (a right knee), lateral ones towards -x.
    centre_x = np.nonzero(mask)[0].mean() - (SHAPE[0] - 1) / 2
    if site.startswith("medial"):
        assert centre_x > 0
    elif site.startswith("lateral"):
        assert centre_x < 0


def test_lateral_tear_and_femoral_oedema():
    key = jax.random.key(4)
    healthy = np.asarray(sim.knee_phantom(key, shape=SHAPE).labels)
    sick = sim.knee_phantom(key, shape=SHAPE, pathology={
        "meniscal_tear": "lateral", "bone_marrow_oedema": "lateral_femoral"})
    tear = np.asarray(sick.pathology.masks["meniscal_tear"])
    oedema = np.asarray(sick.pathology.masks["bone_marrow_oedema"])
    assert tear.any() and np.all(healthy[tear] == L["lateral_meniscus"])
    assert oedema.any() and np.all(healthy[oedema] == L["femur"])
    assert not bool(sick.pathology.present["cartilage_lesion"])


def test_healthy_and_random_pathology():
    healthy = sim.knee_phantom(jax.random.key(0), shape=SHAPE)
    for name in sim.PATHOLOGY_SITES:
        assert not bool(healthy.pathology.present[name])
        assert int(healthy.pathology.site[name]) == -1
        assert not np.asarray(healthy.pathology.masks[name]).any()
    present = []
    for seed in range(12):
        p = sim.knee_phantom(jax.random.key(seed), shape=SHAPE, pathology="random")
        flags = {n: bool(p.pathology.present[n]) for n in sim.PATHOLOGY_SITES}
        for name, flag in flags.items():
            mask = np.asarray(p.pathology.masks[name])
            if not flag:
                assert not mask.any(), name
            elif name != "meniscal_tear":  # a small tear can miss the 5 mm slices of this grid
                assert mask.any(), name
            assert (int(p.pathology.site[name]) >= 0) == flag
        present.append(list(flags.values()))
    frequency = np.mean(present, axis=0)
    assert np.all(frequency > 0) and np.all(frequency < 1)  # drawn, neither never nor always
    always = sim.knee_phantom(jax.random.key(1), shape=SHAPE, pathology={"effusion": 1.0})
    never = sim.knee_phantom(jax.random.key(1), shape=SHAPE, pathology={"effusion": 0.0})
    assert bool(always.pathology.present["effusion"]) and not bool(never.pathology.present[
        "effusion"])
    listed = sim.knee_phantom(jax.random.key(1), shape=SHAPE, pathology=["meniscal_tear"])
    assert bool(listed.pathology.present["meniscal_tear"])
    assert not bool(listed.pathology.present["effusion"])
