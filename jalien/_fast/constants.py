"""Frame layout shared by both twins (kept in one place so they cannot drift)."""

MAGIC = b"JW"
VERSION = 1
HEADER_SIZE = 12  # magic(2) version(1) flags(1) stream_id(u32) length(u32), big-endian

CODEC_MSGPACK = 0
CODEC_JSON = 1
CODEC_RAW = 2
CODEC_MASK = 0x03
FLAG_COMPRESSED = 0x04
FLAG_MORE = 0x08  # another frame of the same reply follows (a streamed listing)
FLAGS_KNOWN = CODEC_MASK | FLAG_COMPRESSED | FLAG_MORE

SIZE_PREFIX = 4  # a compressed body starts with the uncompressed length (u32)
DEFAULT_MAX_FRAME = 64 * 1024 * 1024
DEFAULT_COMPRESS_THRESHOLD = 8 * 1024
DEFAULT_LEVEL = 1
MAX_STREAM_ID = 0xFFFFFFFF

# request counters (reqstats twins): latency buckets in seconds, from an inline cache hit
# to a long find, and the most distinct command names kept (any more count as "other")
REQUEST_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                   0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)  # fmt: skip
MAX_COMMANDS = 256
OTHER_COMMAND = "other"
