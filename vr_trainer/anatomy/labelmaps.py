"""Label maps: what each integer in a segmentation means.

* ``totalsegmentator`` - TotalSegmentator v2 task "total" (117 classes), each
  with a structure name (vertebrae become ``L1``, ``T12`` ... like the
  phantoms) and a tissue class.
* a YAML file::

      labels:
        1: {name: L4, tissue: bone}
        2: {name: disc_L4_L5, tissue: disc, description: "L4-L5 disc"}
        7: nerve_root_L5_left            # name only -> default_tissue
      default_tissue: bone               # optional

Errors name the file, the line and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import AnatomyError
from .pipeline import LabelSpec
from .tissues import TISSUES


def _ts_total() -> dict[int, tuple[str, str]]:
    t: dict[int, tuple[str, str]] = {}
    organs = ["spleen", "kidney_right", "kidney_left", "gallbladder", "liver", "stomach", "pancreas",
              "adrenal_gland_right", "adrenal_gland_left", "lung_upper_lobe_left", "lung_lower_lobe_left",
              "lung_upper_lobe_right", "lung_middle_lobe_right", "lung_lower_lobe_right", "esophagus",
              "trachea", "thyroid_gland", "small_bowel", "duodenum", "colon", "urinary_bladder", "prostate"]
    for i, n in enumerate(organs, start=1):
        t[i] = (n, "organ")
    t[23], t[24] = ("kidney_cyst_left", "pathology"), ("kidney_cyst_right", "pathology")
    t[25] = ("sacrum", "bone")
    verts = (["S1", "L5", "L4", "L3", "L2", "L1"] + [f"T{i}" for i in range(12, 0, -1)]
             + [f"C{i}" for i in range(7, 0, -1)])
    for i, v in enumerate(verts, start=26):
        t[i] = (v, "bone")
    t[51] = ("heart", "organ")
    vessels = ["aorta", "pulmonary_vein", "brachiocephalic_trunk", "subclavian_artery_right",
               "subclavian_artery_left", "common_carotid_artery_right", "common_carotid_artery_left",
               "brachiocephalic_vein_left", "brachiocephalic_vein_right"]
    for i, n in enumerate(vessels, start=52):
        t[i] = (n, "vessel")
    t[61] = ("atrial_appendage_left", "organ")
    for i, n in enumerate(["superior_vena_cava", "inferior_vena_cava", "portal_vein_and_splenic_vein",
                           "iliac_artery_left", "iliac_artery_right", "iliac_vena_left", "iliac_vena_right"], start=62):
        t[i] = (n, "vessel")
    for i, n in enumerate(["humerus_left", "humerus_right", "scapula_left", "scapula_right", "clavicula_left",
                           "clavicula_right", "femur_left", "femur_right", "hip_left", "hip_right"], start=69):
        t[i] = (n, "bone")
    t[79] = ("spinal_cord", "nerve")
    for i, n in enumerate(["gluteus_maximus_left", "gluteus_maximus_right", "gluteus_medius_left",
                           "gluteus_medius_right", "gluteus_minimus_left", "gluteus_minimus_right",
                           "autochthon_left", "autochthon_right", "iliopsoas_left", "iliopsoas_right"], start=80):
        t[i] = (n, "muscle")
    t[90], t[91] = ("brain", "organ"), ("skull", "bone")
    for k in range(12):
        t[92 + k] = (f"rib_left_{k + 1}", "bone")
        t[104 + k] = (f"rib_right_{k + 1}", "bone")
    t[116], t[117] = ("sternum", "bone"), ("costal_cartilages", "cartilage")
    return t


TOTALSEGMENTATOR_TOTAL: dict[int, tuple[str, str]] = _ts_total()


def totalsegmentator_specs() -> dict[int, LabelSpec]:
    """TotalSegmentator v2 "total" ids as label specs."""
    return {i: LabelSpec(i, n, tis, f"TotalSegmentator total #{i}") for i, (n, tis) in TOTALSEGMENTATOR_TOTAL.items()}


def _line(node: Any) -> int:
    return int(node.start_mark.line) + 1


def load_yaml_map(path: str | Path) -> dict[int, LabelSpec]:
    """Read a custom YAML label map (format in the module docstring)."""
    import yaml

    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
        root = yaml.compose(text)
    except FileNotFoundError:
        raise AnatomyError(f"{p}: label map file not found") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark is not None else str(p)
        raise AnatomyError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)}); fix the label map") from exc
    if not isinstance(root, yaml.MappingNode):
        raise AnatomyError(f"{p}:1: a label map is a mapping with a 'labels' key")
    top = {k.value: v for k, v in root.value}
    default_tissue = "bone"
    if "default_tissue" in top:
        default_tissue = str(top["default_tissue"].value)
        if default_tissue not in TISSUES:
            raise AnatomyError(f"{p}:{_line(top['default_tissue'])}: default_tissue {default_tissue!r} "
                               f"is not one of {', '.join(TISSUES)}")
    labels = top.get("labels")
    if not isinstance(labels, yaml.MappingNode):
        raise AnatomyError(f"{p}:{_line(labels or root)}: missing 'labels:' mapping of id -> name or {{name, tissue}}")
    specs: dict[int, LabelSpec] = {}
    for knode, vnode in labels.value:
        where = f"{p}:{_line(knode)}"
        try:
            lid = int(knode.value)
        except ValueError:
            raise AnatomyError(f"{where}: label id {knode.value!r} is not an integer") from None
        if lid <= 0:
            raise AnatomyError(f"{where}: label id {lid} must be positive (0 is background)")
        if isinstance(vnode, yaml.ScalarNode):
            fields: dict[str, str] = {"name": str(vnode.value)}
        elif isinstance(vnode, yaml.MappingNode):
            fields = {k.value: str(v.value) for k, v in vnode.value}
        else:
            raise AnatomyError(f"{where}: label {lid}: expected a name or {{name, tissue}}")
        unknown = set(fields) - {"name", "tissue", "description"}
        if unknown:
            raise AnatomyError(f"{where}: label {lid}: unknown field(s) {sorted(unknown)}; "
                               "use name, tissue, description")
        if not fields.get("name"):
            raise AnatomyError(f"{where}: label {lid}: field 'name' is missing")
        tissue = fields.get("tissue", default_tissue)
        if tissue not in TISSUES:
            raise AnatomyError(f"{where}: label {lid}: field 'tissue' is {tissue!r}; use one of {', '.join(TISSUES)}")
        if lid in specs:
            raise AnatomyError(f"{where}: label {lid} is defined twice")
        specs[lid] = LabelSpec(lid, fields["name"], tissue, fields.get("description", ""))
    if not specs:
        raise AnatomyError(f"{p}: 'labels' is empty")
    return specs


def resolve_label_map(spec: str | None) -> tuple[dict[int, LabelSpec], str]:
    """``totalsegmentator`` (default) or a YAML path -> (specs, description for the manifest)."""
    if spec is None or spec.lower() in ("totalsegmentator", "totalsegmentator-total", "total"):
        return totalsegmentator_specs(), "TotalSegmentator v2 'total'"
    p = Path(spec)
    if p.suffix.lower() not in (".yaml", ".yml"):
        raise AnatomyError(f"--label-map {spec!r}: use 'totalsegmentator' or a .yaml file")
    return load_yaml_map(p), f"custom YAML ({p.name})"
