/**
 * Maps of lists (records by namespace, paths by inode): one way to add to them, in place. Spreading
 * the old list into a new one at every add copies it each time, quadratic in a list's length (a
 * node's thousands of processes in one namespace, gc's claims per namespace).
 */

/** Adds `values` to the list `map` keeps at `key`, making it the first time. */
export function appendTo<K, V>(map: Map<K, V[]>, key: K, ...values: readonly V[]): void {
  let list = map.get(key);
  if (list === undefined) {
    list = [];
    map.set(key, list);
  }
  for (const value of values) list.push(value);
}
