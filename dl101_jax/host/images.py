"""Images as users have them, read into what a model takes (predict's input layer).

Pillow opens every format; this module decides what each kind becomes, and says so
once per kind (never silently):
- 16-bit (and 32-bit integer) grayscale: scaled to 8 bits (value / 257), not clipped;
- 32-bit float grayscale: 0..1 scaled to 8 bits; one with values above 1 read as 0..255;
- palette images: their colours; transparency (an alpha channel, or a palette's or a
  grayscale image's transparent colour): flattened on white, as a viewer shows it;
- EXIF orientation: applied, so the image is classified upright;
- animated files (GIF, APNG, WebP): the first frame;
- CMYK, YCbCr, LAB and the like: converted to RGB; colour to gray or gray to colour for
  the model's channels; any size: resized (bilinear) to the model's input.
Only regular files are read (a FIFO or device named *.png would block or never end), and
images above MAX_PIXELS are refused before they are decoded (a decompression bomb: a
tiny file whose header claims 40000 x 40000 pixels).
"""

from __future__ import annotations

import os
import stat
import warnings

import numpy as np

from dl101_jax.config import ConfigError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
MAX_PIXELS = 8000 * 8000  # 64 megapixels: any camera photo, not a bomb
BACKGROUND = (255, 255, 255)  # what transparency is flattened on


def _is_regular(path: str) -> bool:
  try:
    return stat.S_ISREG(os.stat(path).st_mode)  # follows symlinks; never opens the file
  except OSError:
    return False


def image_files(paths: tuple[str, ...]) -> list[str]:
  """The files named, and each folder's image files (regular files only), in order."""
  if not paths:
    raise ConfigError("images", "give at least one image file or folder")
  out = []
  for p in paths:
    if os.path.isdir(p):
      found = sorted(os.path.join(p, f) for f in os.listdir(p)
                     if f.lower().endswith(IMAGE_EXTENSIONS) and _is_regular(os.path.join(p, f)))
      if not found:
        raise ConfigError("images", f"the folder {p} has no image files "
                          f"({', '.join(IMAGE_EXTENSIONS)})")
      out += found
    elif _is_regular(p):
      out.append(p)
    elif os.path.exists(p):
      raise ConfigError("images", f"{p} is not a regular file (FIFOs, devices and sockets are "
                        f"never read)")
    else:
      raise ConfigError("images", f"no such file or folder: {p}")
  return out


def read_image(path: str, shape: list[int], notes: set[str]) -> np.ndarray:
  """H x W x C uint8 for a model whose input is `shape` (H, W, C); adds to `notes` one
  sentence per kind of conversion it made."""
  from PIL import Image

  h, w, c = shape
  Image.MAX_IMAGE_PIXELS = MAX_PIXELS  # Pillow's own guard, at this bound
  try:
    with warnings.catch_warnings():
      warnings.simplefilter("error", Image.DecompressionBombWarning)
      with Image.open(path) as img:
        if img.width * img.height > MAX_PIXELS:
          raise ConfigError("images", f"{path} is {img.width} x {img.height} pixels; at most "
                            f"{MAX_PIXELS:,} are read (a guard against decompression bombs)")
        img = _upright_rgb_or_gray(img, notes)
        if (img.mode == "L") != (c == 1):
          notes.add(f"{'colour images were made gray' if c == 1 else 'gray images were given 3 channels'} "
                    f"for this {c}-channel model")
        img = img.convert("L" if c == 1 else "RGB")
        if img.size != (w, h):
          notes.add(f"images were resized to the model's {w} x {h}")
          img = img.resize((w, h), Image.BILINEAR)
        arr = np.asarray(img, np.uint8)
  except ConfigError:
    raise
  except (Image.DecompressionBombError, Image.DecompressionBombWarning):
    raise ConfigError("images", f"{path} claims more pixels than the {MAX_PIXELS:,}; at "
                      f"most {MAX_PIXELS:,} are read (a guard against decompression bombs)"
                      ) from None
  except Exception as e:  # Pillow raises many types for damaged files (OSError, ValueError, ...)
    raise ConfigError("images", f"{path} is not an image that can be read "
                      f"({type(e).__name__})") from None
  return arr.reshape(h, w, c)


def _upright_rgb_or_gray(img, notes: set[str]):
  """The first frame, upright, as 8-bit "L" or "RGB" (see the module docstring)."""
  from PIL import Image, ImageOps

  if getattr(img, "n_frames", 1) > 1:
    notes.add("animated images: the first frame was classified")
    img.seek(0)
  if img.getexif().get(0x0112, 1) != 1:  # the EXIF Orientation tag
    notes.add("EXIF orientation was applied")
    img = ImageOps.exif_transpose(img)
  if img.mode.startswith("I;16") or img.mode == "I":
    notes.add("16-bit images were scaled to 8 bits (value / 257)")
    a = np.asarray(img, np.float64) / 257.0
    img = Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8), "L")
  elif img.mode == "F":
    a = np.asarray(img, np.float64)
    if np.nanmax(a, initial=0.0) <= 1.0:  # float images are 0..1 by convention
      notes.add("32-bit float images were read as 0..1 and scaled to 8 bits")
      a = a * 255.0
    else:  # values past 1 cannot be 0..1: read them as 8-bit values, never clip them to white
      notes.add("32-bit float images with values above 1 were read as 0..255")
    a = np.clip(np.rint(np.nan_to_num(a)), 0, 255)
    img = Image.fromarray(a.astype(np.uint8), "L")
  if img.mode == "P":
    img = img.convert("RGBA")  # keeps a palette's transparent colour as alpha
  if "transparency" in img.info and img.mode in ("L", "RGB"):
    img = img.convert("RGBA")
  if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
    rgba = img.convert("RGBA")
    if rgba.getextrema()[3][0] < 255:
      notes.add(f"transparent pixels were flattened on white {BACKGROUND}")
    flat = Image.new("RGBA", rgba.size, BACKGROUND + (255,))
    flat.alpha_composite(rgba)
    img = flat.convert("L" if img.mode in ("LA", "La") else "RGB")
  if img.mode not in ("L", "RGB", "1"):
    notes.add(f"{img.mode} images were converted to RGB")
    img = img.convert("RGB")
  return img
