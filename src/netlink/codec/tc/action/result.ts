/** TC_ACT_*: the verdict an action returns (linux/pkt_cls.h). */
export const TcActionResult = { OK: 0, RECLASSIFY: 1, SHOT: 2, PIPE: 3, STOLEN: 4 } as const;
