// Preloaded (node --import) to run a program as if @opentelemetry/sdk-node were not installed: the
// checkout has it as a dev dependency, a user's installation may not.
import { register } from 'node:module';

const hook = `
export async function resolve(specifier, context, next) {
  if (specifier === '@opentelemetry/sdk-node') {
    const error = new Error("Cannot find package '@opentelemetry/sdk-node' (hidden by the test)");
    error.code = 'ERR_MODULE_NOT_FOUND';
    throw error;
  }
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hook)}`);
