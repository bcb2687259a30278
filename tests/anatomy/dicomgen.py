"""Small DICOM test objects written with pydicom/highdicom (classic slices, enhanced multi-frame, SEG).

Every object carries the same made-up identifiers (``SECRETS``) so tests can check none reaches a bundle.
"""

from __future__ import annotations

from pathlib import Path

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sr.codedict import codes
from pydicom.uid import (CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, SecondaryCaptureImageStorage,
                         UltrasoundImageStorage, generate_uid)

SHAPE = (32, 32, 12)                 # columns (x), rows (y), slices (z)
PIXEL_MM = (1.5, 1.25)               # (between rows, between columns)
SLICE_MM = 2.0
ORIGIN_LPS = (-20.0, -16.0, 100.0)
SECRETS = ("Doe^Jane", "PID-12345", "St Elsewhere", "1 Secret Road", "SN42", "ACC999", "Dr^Who", "private secret")
BONE = (slice(8, 20), slice(6, 18), slice(2, 9))    # (x, y, z) voxel block: "L4"
CORD = (slice(22, 28), slice(22, 28), slice(3, 7))  # "spinal cord"
_SOP = {"CT": CTImageStorage, "MR": MRImageStorage, "OT": SecondaryCaptureImageStorage, "US": UltrasoundImageStorage}


def phantom_values(modality: str = "CT") -> np.ndarray:
    """(x, y, z) stored values: air/soft tissue with a bone block (CT: stored = HU + 1024)."""
    v = np.full(SHAPE, 1024 - 1000 if modality == "CT" else 40, np.int16)
    v[4:28, 4:28, :] = 1024 + 40 if modality == "CT" else 300
    v[BONE] = 1024 + 1200 if modality == "CT" else 120
    return v


def classic(modality: str = "CT", description: str = "AX bone", values: np.ndarray | None = None) -> list[Dataset]:
    """A one-file-per-slice series (in memory), identifiers included."""
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    vals = phantom_values(modality) if values is None else values
    out = []
    for k in range(SHAPE[2]):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID, ds.SOPInstanceUID = _SOP[modality], generate_uid()
        ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = SECRETS[0], SECRETS[1], "19700101", "F"
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame
        ds.StudyDate = ds.SeriesDate = ds.ContentDate = "20240102"
        ds.StudyTime = ds.SeriesTime = ds.ContentTime = "101010"
        ds.AccessionNumber, ds.StudyID, ds.ReferringPhysicianName = SECRETS[5], "1", SECRETS[6]
        ds.InstitutionName, ds.InstitutionAddress = SECRETS[2], SECRETS[3]
        ds.Modality, ds.SeriesNumber, ds.InstanceNumber, ds.SeriesDescription = modality, 3, k + 1, description
        ds.Manufacturer, ds.ManufacturerModelName, ds.SoftwareVersions = "Acme", "X1", "1.0"
        ds.DeviceSerialNumber = SECRETS[4]
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PositionReferenceIndicator = ""
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [ORIGIN_LPS[0], ORIGIN_LPS[1], ORIGIN_LPS[2] + SLICE_MM * k]
        ds.PixelSpacing, ds.SliceThickness = list(PIXEL_MM), SLICE_MM
        ds.Rows, ds.Columns = SHAPE[1], SHAPE[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        if modality == "CT":
            ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType, ds.KVP = 1, -1024, "HU", 120
        elif modality == "MR":
            ds.ScanningSequence, ds.SequenceVariant, ds.ScanOptions, ds.MRAcquisitionType = "SE", "NONE", "", "3D"
            ds.RepetitionTime, ds.EchoTime, ds.MagneticFieldStrength = 500, 10, 1.5
        ds.add_new(0x00091010, "LO", "ACME private")
        ds.add_new(0x00091001, "LO", SECRETS[7])
        ds.PixelData = np.ascontiguousarray(vals[:, :, k].T.astype(np.int16)).tobytes()  # (rows, cols)
        out.append(ds)
    return out


def enhanced(slices: list[Dataset]) -> Dataset:
    """Legacy Converted Enhanced CT/MR (one multi-frame object) of a classic series."""
    cls = hd.legacy.LegacyConvertedEnhancedCTImage if slices[0].Modality == "CT" else \
        hd.legacy.LegacyConvertedEnhancedMRImage
    return cls(slices, series_instance_uid=generate_uid(), series_number=4, sop_instance_uid=generate_uid(),
               instance_number=1)


def per_frame_geometry(ds: Dataset) -> Dataset:
    """Move orientation and pixel measures from the shared into every per-frame functional group."""
    shared = ds.SharedFunctionalGroupsSequence[0]
    for name in ("PlaneOrientationSequence", "PixelMeasuresSequence"):
        seq = shared[name]
        for fg in ds.PerFrameFunctionalGroupsSequence:
            fg[name] = seq
        del shared[name]
    return ds


def seg(slices: list[Dataset], cord: tuple[slice, slice, slice] = CORD) -> Dataset:
    """A binary DICOM SEG on ``slices``: segment 1 'L4 vertebra' (bone), 2 'Spinal cord' (``cord`` may
    overlap the bone)."""
    mask = np.zeros((SHAPE[2], SHAPE[1], SHAPE[0], 2), np.uint8)  # (frames, rows, cols, segments)
    for n, box in ((1, BONE), (2, cord)):
        mask[box[2], box[1], box[0], n - 1] = 1
    alg = hd.seg.SegmentAlgorithmTypeValues.MANUAL
    descs = [hd.seg.SegmentDescription(segment_number=1, segment_label="L4 vertebra", algorithm_type=alg,
                                       segmented_property_category=codes.SCT.Tissue,
                                       segmented_property_type=codes.SCT.Bone),
             hd.seg.SegmentDescription(segment_number=2, segment_label="Spinal cord", algorithm_type=alg,
                                       segmented_property_category=codes.SCT.AnatomicalStructure,
                                       segmented_property_type=codes.SCT.SpinalCord)]
    return hd.seg.Segmentation(source_images=slices, pixel_array=mask,
                               segmentation_type=hd.seg.SegmentationTypeValues.BINARY, segment_descriptions=descs,
                               series_instance_uid=generate_uid(), series_number=5, sop_instance_uid=generate_uid(),
                               instance_number=1, manufacturer="Acme", manufacturer_model_name="seg",
                               software_versions="1", device_serial_number=SECRETS[4])


def write(datasets: list[Dataset] | Dataset, folder: Path) -> Path:
    """Save datasets as ``folder/NNN.dcm``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    items = datasets if isinstance(datasets, list) else [datasets]
    start = len(list(folder.iterdir()))
    for i, ds in enumerate(items):
        ds.save_as(folder / f"{start + i:03d}.dcm", enforce_file_format=True)
    return folder
