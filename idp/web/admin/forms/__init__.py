"""The admin console's forms: one FlaskForm class per form, one module per area (apps, users, org, …).

Field errors come from the form's validators or from a ServiceError that names its field (forms.base.refuse).
"""
