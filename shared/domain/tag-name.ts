// What a tag's name may be: one rule for the API, the OpenAPI document and the CLI. A leaf module
// with no imports: the CLI checks a name before asking without loading the domain, its drivers or
// zod (tags.ts builds the API's schema from the same rule).

/** `v` followed by digits is a version pin (@v3), never a tag. */
export const TAG_PATTERN = /^[a-z][a-z0-9-]{0,30}$/;
const VERSION_PIN = /^v[0-9]+$/;

/** What is wrong with a name that is not a tag, per part of the rule. */
export const TAG_NAME_RULES = {
  pattern: 'a tag is 1–31 characters of a-z, 0-9 and "-", starting with a letter',
  versionPin: 'a tag cannot look like a version pin (v1, v2, …)',
} as const;

export const looksLikeVersionPin = (name: string): boolean => VERSION_PIN.test(name);

/** Why `name` cannot be a tag, or null when it can. */
export function tagNameProblem(name: string): string | null {
  if (!TAG_PATTERN.test(name)) return TAG_NAME_RULES.pattern;
  if (looksLikeVersionPin(name)) return TAG_NAME_RULES.versionPin;
  return null;
}
