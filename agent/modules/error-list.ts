// A module's list of what went wrong is part of its answer, and a host's owner
// decides how long it could get (a million bad lines in a file): the first
// ones are kept, the rest counted in one last line.

const MAX_ERRORS = 50;

export function boundErrors(errors: string[], max = MAX_ERRORS): string[] {
  if (errors.length <= max) return errors;
  return [...errors.slice(0, max), `… and ${errors.length - max} more errors`];
}
