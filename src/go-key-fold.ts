/**
 * Go's case folding of a key as Kata's Go runtime matches one to a field: encoding/json (kata-network's
 * JSON) and BurntSushi/toml (configuration.toml) both take an exact match first, else one that
 * strings.EqualFold (or encoding/json's fold, the same for these names) accepts: Unicode simple folding.
 */

/**
 * `key` folded as Go folds it against an ASCII field name: ASCII case, and the two letters Unicode
 * folds onto ASCII ones, the Kelvin sign U+212A (k) and the long s U+017F (s). No other letter folds
 * onto ASCII (the dotted İ and dotless ı fold onto nothing), so they stay as written and match no
 * field. Go up to 1.20 (Kata 1.x's JSON) compared with equalFoldRight, special-casing k and s, and
 * Go 1.21 and later fold each rune with unicode.SimpleFold: the same for ASCII field names.
 * JavaScript's toLowerCase makes k of the Kelvin sign but leaves ſ as it is.
 */
export function goFoldedKey(key: string): string {
  return key
    .replace(/\u212a/g, 'k')
    .replace(/\u017f/g, 's')
    .replace(/[A-Z]/g, (letter) => letter.toLowerCase());
}
