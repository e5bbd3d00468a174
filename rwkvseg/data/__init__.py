"""Data: files, checks, splits, the uint8 cache, and batches on the device.

    paths      find_data_root, dataset_dir, samples_dir       where the data live
    files      read_bytes, read_text, read_image              the checked readers every file goes through
    sets       DATASETS, load_dataset, EvalSet, SegData       a data set on the device: train / val / test
    isic       find_isic_pairs, load_isic, isic2018_cache     ISIC 2017 / 2018 image + mask files
    acdc       read_h5, read_volume, acdc_cache, ...          ACDC HDF5 (SSL4MIS) files, NIfTI frames
    hf         load_hf, export_imagefolder                    the Hugging Face `datasets` path
    synthetic  synthetic_acdc, synthetic_acdc_volumes         cardiac-like slices for quick mode
    cache      SegCache, save_cache, load_cache               decode once, load in seconds
    splits     split_ids, split_info, split_sha256            committed ID lists and their hashes
    augment    IsicAugment, AcdcAugment, apply_augment        the papers' augmentations, batched
    normalize  Normalization, NORMALIZATIONS                  uint8 -> network input
    gpu        GpuLoader                                      seeded batches from device tensors
    stats      foreground_fraction, class_fractions, ...      class balance, lesion sizes
    overlay    overlay                                        masks drawn over images
"""
from rwkvseg.data.acdc import (AcdcVolume, acdc_cache, acdc_cache_name, build_acdc_cache, cache_volumes,
                               find_acdc_nifti, read_h5, read_nifti_frame, read_volume, resize_image, resize_label,
                               to_uint8, volume_depths, volume_slice_ids)
from rwkvseg.data.augment import AcdcAugment, AugmentParams, IsicAugment, apply_augment
from rwkvseg.data.cache import SegCache, load_cache, save_cache
from rwkvseg.data.errors import DataError, DataNotFoundError, DataNoteWarning, DataSkipWarning, SkipLog
from rwkvseg.data.files import ImageRead, read_bytes, read_image, read_text
from rwkvseg.data.gpu import GpuLoader
from rwkvseg.data.hf import export_imagefolder, load_hf
from rwkvseg.data.isic import (IsicPair, find_isic_pairs, isic2018_cache, isic2018_cache_name, isic_samples,
                               load_isic, load_isic_masks, read_isic_pair)
from rwkvseg.data.normalize import NORMALIZATIONS, Normalization
from rwkvseg.data.overlay import overlay
from rwkvseg.data.paths import dataset_dir, find_data_root, has_dataset, samples_dir
from rwkvseg.data.sets import DATASETS, DatasetInfo, EvalSet, SegData, dataset_info, load_dataset, normalization_of
from rwkvseg.data.splits import acdc_authors_split, split_ids, split_info, split_sha256
from rwkvseg.data.stats import channel_mean_std, class_fractions, foreground_fraction
from rwkvseg.data.synthetic import synthetic_acdc, synthetic_acdc_volumes, synthetic_volume

__all__ = [
    "AcdcAugment", "AcdcVolume", "AugmentParams", "DATASETS", "DataError", "DataNotFoundError", "DataNoteWarning",
    "DataSkipWarning", "DatasetInfo", "EvalSet", "GpuLoader", "ImageRead", "IsicAugment", "IsicPair", "NORMALIZATIONS",
    "Normalization", "SegCache", "SegData", "SkipLog", "acdc_authors_split", "acdc_cache", "acdc_cache_name",
    "apply_augment", "build_acdc_cache", "cache_volumes", "channel_mean_std", "class_fractions", "dataset_dir",
    "dataset_info", "export_imagefolder", "find_acdc_nifti", "find_data_root", "find_isic_pairs", "foreground_fraction",
    "has_dataset", "isic2018_cache", "isic2018_cache_name", "isic_samples", "load_cache", "load_dataset", "load_hf",
    "load_isic", "load_isic_masks", "normalization_of", "overlay", "read_bytes", "read_h5", "read_image",
    "read_isic_pair", "read_nifti_frame", "read_text", "read_volume", "resize_image", "resize_label", "samples_dir",
    "save_cache", "split_ids", "split_info", "split_sha256", "synthetic_acdc", "synthetic_acdc_volumes",
    "synthetic_volume", "to_uint8", "volume_depths", "volume_slice_ids",
]
