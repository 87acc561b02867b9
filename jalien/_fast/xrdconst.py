"""Numbers of the XRootD protocol (xrootd/xrootd src/XProtocol/XProtocol.hh and the "XRootD
Protocol" specification), shared by the decoder twins (xrdproto_c / xrdproto_py) and the
session (jalien.storage.xrd_session). All fields on the wire are big-endian."""

HANDSHAKE_SIZE = 20  # the client's first bytes: 0, 0, 0, 4, 2012 as five int32
HANDSHAKE_FOURTH = 4
HANDSHAKE_FIFTH = 2012
HEADER_SIZE = 24  # streamid[2] requestid(u16) body[16] dlen(i32)
RESPONSE_HEADER_SIZE = 8  # streamid[2] status(u16) dlen(i32)
READV_ELEMENT = 16  # readahead_list: fhandle[4] rlen(i32) offset(i64)
MAX_PAYLOAD = 64 * 1024 * 1024  # the most data one request may carry (writes, readv lists)

HANDSHAKE = 0  # pseudo request id the decoder reports for the handshake

# request ids
kXR_auth = 3000
kXR_query = 3001
kXR_chmod = 3002
kXR_close = 3003
kXR_dirlist = 3004
kXR_gpfile = 3005
kXR_protocol = 3006
kXR_login = 3007
kXR_mkdir = 3008
kXR_mv = 3009
kXR_open = 3010
kXR_ping = 3011
kXR_chkpoint = 3012
kXR_read = 3013
kXR_rm = 3014
kXR_rmdir = 3015
kXR_sync = 3016
kXR_stat = 3017
kXR_set = 3018
kXR_write = 3019
kXR_fattr = 3020
kXR_prepare = 3021
kXR_statx = 3022
kXR_endsess = 3023
kXR_bind = 3024
kXR_readv = 3025
kXR_pgwrite = 3026
kXR_locate = 3027
kXR_truncate = 3028
kXR_sigver = 3029
kXR_pgread = 3030
kXR_writev = 3031

# response status
kXR_ok = 0
kXR_oksofar = 4000
kXR_attn = 4001
kXR_authmore = 4002
kXR_error = 4003
kXR_redirect = 4004
kXR_wait = 4005

# error codes
kXR_ArgInvalid = 3000
kXR_ArgMissing = 3001
kXR_ArgTooLong = 3002
kXR_FileLocked = 3003
kXR_FileNotOpen = 3004
kXR_FSError = 3005
kXR_InvalidRequest = 3006
kXR_IOError = 3007
kXR_NoMemory = 3008
kXR_NoSpace = 3009
kXR_NotAuthorized = 3010
kXR_NotFound = 3011
kXR_ServerError = 3012
kXR_Unsupported = 3013
kXR_noserver = 3014
kXR_NotFile = 3015
kXR_isDirectory = 3016
kXR_Cancelled = 3017
kXR_ItExists = 3018
kXR_ChkSumErr = 3019
kXR_inProgress = 3020
kXR_overQuota = 3021

# server kinds and kXR_protocol response flags
kXR_DataServer = 1
kXR_isServer = 0x00000001
kXR_suppgrw = 0x00200000  # pgread/pgwrite: NOT advertised, clients then read and write plainly
kXR_supposc = 0x00100000

# kXR_open options
kXR_compress = 0x0001
kXR_delete = 0x0002
kXR_force = 0x0004
kXR_new = 0x0008
kXR_open_read = 0x0010
kXR_open_updt = 0x0020
kXR_async = 0x0040
kXR_refresh = 0x0080
kXR_mkpath = 0x0100
kXR_open_apnd = 0x0200
kXR_retstat = 0x0400
kXR_replica = 0x0800
kXR_posc = 0x1000
kXR_nowait = 0x2000
kXR_seqio = 0x4000
kXR_open_wrto = 0x8000

# kXR_query infotypes
kXR_QStats = 1
kXR_QPrep = 2
kXR_Qcksum = 3
kXR_Qxattr = 4
kXR_Qspace = 5
kXR_Qckscan = 6
kXR_Qconfig = 7
kXR_Qvisa = 8
kXR_Qopaque = 16

# kXR_stat response flags, kXR_dirlist options
kXR_file = 0
kXR_xset = 1
kXR_isDir = 2
kXR_other = 4
kXR_readable = 16
kXR_writable = 32
kXR_dstat = 2
