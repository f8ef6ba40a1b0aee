/**
 * A filter's action list (TCA_*_ACT): one nested attribute per action, numbered from 1, each with
 * its kind and its options. The kinds vcnet writes and reads are in action/.
 */
import { InvalidInputError } from '../../../errors.js';
import { Attributes } from '../reader.js';
import type { MessageWriter } from '../writer.js';
import { decodeGactOptions, encodeGactOptions, type TcGactAction } from './action/gact.js';
import { decodeMirredOptions, encodeMirredOptions, type TcMirredAction } from './action/mirred.js';

/** TCA_ACT_*: the attributes of one action. */
export const ActionAttribute = { KIND: 1, OPTIONS: 2, INDEX: 3, STATS: 4, COOKIE: 6, FLAGS: 7 } as const;

/**
 * A tc action of a filter: mirred (redirect or mirror to a link), gact (pass, drop...), or another kind kept
 * by name only.
 */
export type TcAction = TcMirredAction | TcGactAction | { kind: string; unparsed?: true };

/** Writes `actions` as the nested action list `attribute` of a filter's options, numbered in order. */
export function encodeActions(writer: MessageWriter, attribute: number, actions: readonly TcAction[]): void {
  writer.beginNested(attribute);
  actions.forEach((action, position) => {
    writer.beginNested(position + 1);
    writer.string(ActionAttribute.KIND, action.kind);
    writer.beginNested(ActionAttribute.OPTIONS);
    if (action.kind === 'mirred' && 'targetIndex' in action) encodeMirredOptions(writer, action);
    else if (action.kind === 'gact' && 'result' in action && action.result !== undefined)
      encodeGactOptions(writer, action);
    else
      throw new InvalidInputError(
        `tc action ${position + 1} kind`,
        action.kind,
        'mirred (with targetIndex) or gact (with result)',
      );
    writer.endNested();
    writer.endNested();
  });
  writer.endNested();
}

/** Reads a filter's nested action list; kinds vcnet does not decode come back by name with `unparsed`. */
export function decodeActions(list: Attributes | undefined): TcAction[] {
  if (!list) return [];
  const actions: TcAction[] = [];
  for (const [, value] of list.all()) {
    const action = new Attributes(value);
    const kind = action.string(ActionAttribute.KIND) ?? '';
    const options = action.nested(ActionAttribute.OPTIONS);
    const decoded =
      kind === 'mirred' ? decodeMirredOptions(options) : kind === 'gact' ? decodeGactOptions(options) : undefined;
    actions.push(decoded ?? { kind, unparsed: true });
  }
  return actions;
}
