/** TC_ACT_*: the verdict an action returns (linux/pkt_cls.h). UNSPEC is tc's `continue`: on to the next filter. */
export const TcActionResult = { UNSPEC: -1, OK: 0, RECLASSIFY: 1, SHOT: 2, PIPE: 3, STOLEN: 4 } as const;
