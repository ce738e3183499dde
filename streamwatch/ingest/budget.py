"""A memory budget for images waiting on the model (web uploads, `serve` requests).

Decoding is bounded (a few at once, pixels counted before decoding), but a decoded image then waits in
the queue until it is answered: 32 concurrent 6000x6000 uploads held 3 GB. So every image takes a
reservation before it is decoded: its decoded size (width x height x 3 bytes, three times over: the
decoder's copy, the RGB one, and the decoder's buffers and heap not yet given back), shrunk to the
model's size as soon as it is decoded (`fit_longest_side`, the same resize the backend does, so the
model sees the same pixels), held until it is answered. A request that does not fit waits for room
until its deadline, then is refused (503, try later); one that could never fit is refused at once (413)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
from collections.abc import AsyncIterator, Sequence

from PIL import Image

from streamwatch.errors import ImageRejected, StreamwatchError
from streamwatch.ingest.images import MAX_IMAGE_PIXELS, declared_size, decode_image

BYTES_PER_PIXEL = 3
DECODE_COPIES = 3  # the decoder's image, its RGB conversion, and the decoder's own buffers and heap not yet given back
TRIM_AFTER_BYTES = 32_000_000  # a decode this large: give the freed memory back to the system


class NoRoom(StreamwatchError):
    """The images waiting already take the budget (`too_large`: this one alone is larger than it)."""

    def __init__(self, message: str, *, too_large: bool = False) -> None:
        super().__init__(message)
        self.too_large = too_large


class MemoryBudget:
    def __init__(self, limit_bytes: int, what: str) -> None:
        self.limit, self.what = limit_bytes, what  # `what`: the config key that sets it, for messages
        self.used = 0
        self._room: asyncio.Condition | None = None

    def _condition(self) -> asyncio.Condition:
        if self._room is None:
            self._room = asyncio.Condition()
        return self._room

    @contextlib.asynccontextmanager
    async def reserved(self, size: int, timeout_s: float) -> AsyncIterator[Reservation]:
        """`size` bytes held for the life of the block (shrink them with `Reservation.shrink`)."""
        if size > self.limit:
            raise NoRoom(
                f"decoding it needs {size / 1e6:.0f} MB, more than {self.what} allows "
                f"({self.limit / 1e6:.0f} MB): send a smaller image",
                too_large=True,
            )
        room = self._condition()
        async with room:
            try:
                await asyncio.wait_for(room.wait_for(lambda: self.used + size <= self.limit), timeout_s)
            except TimeoutError:
                raise NoRoom(
                    f"the images waiting for the model already take {self.what} ({self.limit / 1e6:.0f} MB); "
                    "retry later"
                ) from None
            self.used += size
        reservation = Reservation(self, size)
        try:
            yield reservation
        finally:
            await reservation.shrink(0)

    async def _give_back(self, amount: int) -> None:
        room = self._condition()
        async with room:
            self.used -= amount
            room.notify_all()


class Reservation:
    def __init__(self, budget: MemoryBudget, size: int) -> None:
        self.budget, self.size = budget, size

    async def shrink(self, size: int) -> None:
        """Hold only `size` bytes from now on (never more than before)."""
        freed = self.size - min(size, self.size)
        self.size -= freed
        if freed:
            await self.budget._give_back(freed)


def decoding_bytes(width: int, height: int) -> int:
    return width * height * BYTES_PER_PIXEL * DECODE_COPIES


def held_bytes(width: int, height: int) -> int:
    return width * height * BYTES_PER_PIXEL


def trim_memory(freed_bytes: int) -> None:
    """After a large decode, return freed heap to the system (glibc keeps it otherwise, per thread
    arena): the process shrinks back once the images are answered. A no-op elsewhere."""
    if freed_bytes < TRIM_AFTER_BYTES:
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


@contextlib.asynccontextmanager
async def held_images(
    payloads: Sequence[bytes],
    *,
    budget: MemoryBudget,
    decoding: asyncio.Semaphore,
    max_side: int,
    timeout_s: float,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> AsyncIterator[list[Image.Image]]:
    """The images of one request decoded within `budget` (their pixels together at most `max_pixels`),
    each shrunk to `max_side` at once, held for the life of the block. ImageRejected names the image
    (`image N of M`) and what is wrong with it; NoRoom when the budget has no room for them."""
    sizes: list[tuple[int, int]] = []
    for number, data in enumerate(payloads, 1):
        left = max(1, max_pixels - sum(w * h for w, h in sizes))
        try:
            sizes.append(await asyncio.to_thread(declared_size, data, max_pixels=left))
        except ImageRejected as exc:
            raise _which(exc, number, len(payloads)) from None
    async with budget.reserved(sum(decoding_bytes(w, h) for w, h in sizes), timeout_s) as reservation:
        images: list[Image.Image] = []
        for number, data in enumerate(payloads, 1):
            try:
                async with decoding:
                    images.append(await asyncio.to_thread(_decoded, data, max_side, max_pixels, sizes[number - 1]))
            except ImageRejected as exc:
                raise _which(exc, number, len(payloads)) from None
        await reservation.shrink(sum(held_bytes(*image.size) for image in images))
        yield images


def _decoded(data: bytes, max_side: int, max_pixels: int, size: tuple[int, int]) -> Image.Image:
    image = decode_image(data, max_pixels=max_pixels, max_side=max_side)
    trim_memory(decoding_bytes(*size) - held_bytes(*image.size))
    return image


def _which(exc: ImageRejected, number: int, count: int) -> ImageRejected:
    if count == 1:
        return exc
    shared = " (the images of one request share that budget)" if exc.too_large else ""
    return ImageRejected(f"{exc}{shared}", too_large=exc.too_large, which=f"image {number} of {count}")
