"""The user and group pages' forms. The account rules (username, email, names, password, groups, the last
admin) are the accounts service's: it refuses with FormErrors naming each field, shown next to it."""

from __future__ import annotations

from idp.auth.enrolment_links import DEFAULT_VALID_HOURS, MAX_VALID_HOURS
from idp.models import User
from idp.services.accounts import UserInput
from idp.web.admin.forms.base import AdminForm, FlagField, ListField, TextField, one_of


class UserForm(AdminForm):
    """Profile, groups and the admin flag of a user."""

    email = TextField(limit=400)
    first_name = TextField(limit=200)
    last_name = TextField(limit=200)
    groups = ListField(keep_empty=False)
    is_admin = FlagField(true_values=("1",))

    @classmethod
    def from_user(cls, user: User) -> UserForm:
        return cls(formdata=None, data={"email": user.email, "first_name": user.first_name,
                                        "last_name": user.last_name, "groups": user.group_names,
                                        "is_admin": user.is_admin})

    def user_input(self) -> UserInput:
        return UserInput(email=self.email.data, first_name=self.first_name.data, last_name=self.last_name.data,
                         groups=tuple(sorted(set(self.groups.data))), is_admin=bool(self.is_admin.data))


class NewUserForm(UserForm):
    username = TextField(limit=200)
    password = TextField(limit=None, strip=False)
    password_confirm = TextField(limit=None, strip=False)


class PasswordForm(AdminForm):
    password = TextField(limit=None, strip=False)
    password_confirm = TextField(limit=None, strip=False)


class UserStatusForm(AdminForm):
    disabled = TextField(limit=None, strip=False, validators=[one_of(("0", "1"), "disabled")])


class GroupForm(AdminForm):
    name = TextField(limit=200)


class MemberForm(AdminForm):
    username = TextField(limit=200)


class EnrolmentLinkForm(AdminForm):
    """How long a new enrolment link stays valid (hours, 1 to MAX_VALID_HOURS; the service checks the range)."""

    valid_hours = TextField(limit=10, default=str(DEFAULT_VALID_HOURS))
    email = FlagField()   # email the link to the user (through the outbox) instead of showing it

    def hours(self) -> int | None:
        """The number of hours, or None (and an error next to the field) when it is not a whole number."""
        text = self.valid_hours.data or str(DEFAULT_VALID_HOURS)
        if not text.isdigit():
            self.add_error("valid_hours", f"valid hours must be a whole number from 1 to {MAX_VALID_HOURS}")
            return None
        return int(text)
