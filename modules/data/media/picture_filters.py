"""Interlaced and HDR video as a player shows it: what the stream declares, and the filter the readers apply.

Interlaced (camcorders, AVCHD, broadcast): a player (VLC, mpv's and browsers' automatic deinterlacing, TVs)
deinterlaces frames flagged interlaced; training on the stored frames would learn the combing of every moving
edge. Such files are deinterlaced with FFmpeg's `bwdif` (motion-adaptive, one output frame per frame so counts,
timestamps and windows are unchanged), its field parity taken from the stream's field order. PyAV runs the
filter; decord cannot, so these files are read with PyAV.

HDR (PQ / SMPTE 2084, HLG / ARIB STD-B67 transfer): a player on an SDR display tone-maps them. Neither
reader's FFmpeg build has a tone-mapping filter (zscale, libplacebo), and an approximation in numpy would be
an unverified guess, so these files are trained as stored and *reported*: they look flat and washed out next
to the player, and the report gives the bundled ffmpeg's command that converts them to SDR first.
"""

from __future__ import annotations

from dataclasses import dataclass

# FFmpeg's AVFieldOrder (codec_context.field_order): which field a player shows first.
FIELD_ORDER_TOP_FIRST = {2: True, 5: True, 3: False, 4: False}  # TT, BT: top first; BB, TB: bottom first
PROGRESSIVE = 1
# FFmpeg's AVColorTransferCharacteristic values of HDR transfers.
HDR_TRANSFERS = {16: "PQ (SMPTE 2084)", 18: "HLG (ARIB STD-B67)"}
SDR_COMMAND = (
    "ffmpeg -i IN -vf zscale=t=linear:npl=100,format=gbrpf32le,zscale=p=bt709,tonemap=hable:desat=0,"
    "zscale=t=bt709:m=bt709:r=tv,format=yuv420p -c:v libx264 -crf 16 OUT.mp4"
)


@dataclass(frozen=True)
class PictureFilter:
    chain: str  # FFmpeg filter chain the readers apply ("" for none)
    corrections: tuple[str, ...]
    rule: tuple[tuple[str, str], ...]  # cache-key parts: frames differ from what was decoded before


def picture_filter(codec_context, first_frame) -> PictureFilter:
    """The filter and the report for a stream, from its field order and its first frame's flags and transfer."""
    chain, corrections, rule = "", [], []
    field_order = codec_context.field_order
    if field_order in FIELD_ORDER_TOP_FIRST or (field_order != PROGRESSIVE and first_frame.interlaced_frame):
        top_first = FIELD_ORDER_TOP_FIRST.get(field_order)
        parity = {True: "tff", False: "bff", None: "auto"}[top_first]
        chain = f"bwdif=mode=send_frame:parity={parity}:deint=interlaced"
        order = {True: "top field first", False: "bottom field first", None: "field order from each frame"}[top_first]
        corrections.append(f"interlaced ({order}): deinterlaced with bwdif, one frame per frame")
        rule.append(("deinterlace", f"bwdif-{parity}"))
    transfer = HDR_TRANSFERS.get(first_frame.color_trc) or HDR_TRANSFERS.get(codec_context.color_trc)
    if transfer:
        corrections.append(
            f"HDR {transfer}: NOT tone-mapped (no tone-mapping filter in the readers), so it trains flatter and paler "
            f"than a player shows it; convert it to SDR first: {SDR_COMMAND}"
        )
    return PictureFilter(chain, tuple(corrections), tuple(rule))


def filtered_frames(frames, stream, chain: str):
    """`frames` (decoded, in presentation order) through the filter chain, timestamps kept; as is without one."""
    if not chain:
        yield from frames
        return
    import av
    from av.filter import Graph

    graph = Graph()
    last = graph.add_buffer(template=stream)
    for step in chain.split(","):
        name, _, options = step.partition("=")
        node = graph.add(name, options)
        last.link_to(node)
        last = node
    last.link_to(graph.add("buffersink"))
    graph.configure()

    def drain():
        while True:
            try:
                yield graph.pull()
            except (BlockingIOError, av.error.EOFError):
                return

    for frame in frames:
        graph.push(frame)
        yield from drain()
    graph.push(None)  # end of input: bwdif gives back the frame it held to look ahead
    yield from drain()
