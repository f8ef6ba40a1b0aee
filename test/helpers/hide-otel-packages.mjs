// Preloaded (node --import) to run a program as an install of vcnet alone runs it: no
// @opentelemetry package at all (@opentelemetry/api is an optional peer dependency that
// @opentelemetry/sdk-node brings), where the checkout has both as dev dependencies.
import { register } from 'node:module';

const hook = `
export async function resolve(specifier, context, next) {
  if (specifier.startsWith('@opentelemetry/')) {
    const error = new Error("Cannot find package '" + specifier + "' imported from " + context.parentURL + " (hidden by the test)");
    error.code = 'ERR_MODULE_NOT_FOUND';
    throw error;
  }
  return next(specifier, context);
}`;
register(`data:text/javascript,${encodeURIComponent(hook)}`);
